from django.urls import path

from orders.apis import OrderCollectionApi, OrderDetailApi

urlpatterns = [
    path("orders/", OrderCollectionApi.as_view(), name="order-collection"),
    path("orders/<uuid:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
]

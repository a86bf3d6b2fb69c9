from django.urls import path

from inventory.apis import ProductListApi

urlpatterns = [path("products/", ProductListApi.as_view(), name="product-list")]

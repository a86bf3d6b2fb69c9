from django.urls import path

from common.async_db import view_on_database_threads
from orders.apis import (
    OrderApproveApi,
    OrderCancelApi,
    OrderCollectionApi,
    OrderDeliverApi,
    OrderDetailApi,
    OrderHeldListApi,
    OrderRejectApi,
    OrderRiskApi,
    OrderShipApi,
    OrderStatusEventsApi,
)
from orders.status_stream import database_threads

urlpatterns = [
    path("orders/", OrderCollectionApi.as_view(), name="order-collection"),
    path("orders/held/", OrderHeldListApi.as_view(), name="order-held-list"),
    path("orders/<uuid:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
    # Served by the stream process (ASGI); the proxy routes this path there.
    path(
        "orders/<uuid:order_id>/events/",
        view_on_database_threads(OrderStatusEventsApi.as_view(), database_threads),
        name="order-events",
    ),
    path("orders/<uuid:order_id>/cancel/", OrderCancelApi.as_view(), name="order-cancel"),
    path("orders/<uuid:order_id>/ship/", OrderShipApi.as_view(), name="order-ship"),
    path("orders/<uuid:order_id>/deliver/", OrderDeliverApi.as_view(), name="order-deliver"),
    # Staff decide on an order the risk check held (docs/risk.md).
    path("orders/<uuid:order_id>/risk/", OrderRiskApi.as_view(), name="order-risk"),
    path("orders/<uuid:order_id>/approve/", OrderApproveApi.as_view(), name="order-approve"),
    path("orders/<uuid:order_id>/reject/", OrderRejectApi.as_view(), name="order-reject"),
]

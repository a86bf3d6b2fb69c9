from django.urls import path

from webhooks.apis import (
    WebhookEndpointCollectionApi,
    WebhookEndpointDetailApi,
    WebhookEndpointEnableApi,
)

urlpatterns = [
    path("webhooks/", WebhookEndpointCollectionApi.as_view(), name="webhook-collection"),
    path("webhooks/<uuid:endpoint_id>/", WebhookEndpointDetailApi.as_view(), name="webhook-detail"),
    path(
        "webhooks/<uuid:endpoint_id>/enable/",
        WebhookEndpointEnableApi.as_view(),
        name="webhook-enable",
    ),
]

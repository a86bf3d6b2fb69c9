from django.urls import path

from notifications.apis import (
    NotificationPreferencesApi,
    PushSubscriptionCollectionApi,
    PushSubscriptionDetailApi,
)

urlpatterns = [
    path(
        "notification-preferences/",
        NotificationPreferencesApi.as_view(),
        name="notification-preferences",
    ),
    path(
        "push-subscriptions/",
        PushSubscriptionCollectionApi.as_view(),
        name="push-subscription-collection",
    ),
    path(
        "push-subscriptions/<uuid:subscription_id>/",
        PushSubscriptionDetailApi.as_view(),
        name="push-subscription-detail",
    ),
]

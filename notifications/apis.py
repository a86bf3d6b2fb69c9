"""The customer's notification channels: preferences, and Web Push subscriptions.

Every endpoint acts on the caller's own rows only; another customer's subscription is a
404. Rules (E.164 numbers, SMS needs a number, push needs a subscription, which push
endpoints are accepted) live in the services; their ValidationErrors are 400s by field."""

import uuid

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api_fields import StrictBooleanField, StrictCharField, StrictIntegerField
from notifications.channels import CHANNELS
from notifications.channels.webpush import vapid_application_server_key
from notifications.selectors import (
    notification_channels_active,
    notification_preferences_get,
    push_subscription_list,
)
from notifications.services import (
    notification_preferences_update,
    push_auth_validate,
    push_p256dh_validate,
    push_subscription_delete,
    push_subscription_register,
)


class NotificationPreferencesApi(APIView):
    """`/api/notification-preferences/`: GET the caller's channels, PUT all of them."""

    @extend_schema_serializer(component_name="NotificationPreferencesInput")
    class InputSerializer(serializers.Serializer):
        email_enabled = StrictBooleanField()
        sms_enabled = StrictBooleanField()
        push_enabled = StrictBooleanField(
            help_text="Needs at least one push subscription (POST /api/push-subscriptions/)."
        )
        phone_number = StrictCharField(
            max_length=16,
            required=False,
            default="",
            allow_blank=True,
            help_text="E.164, e.g. +4915112345678; needed for SMS. Empty: none.",
        )

    @extend_schema_serializer(component_name="NotificationPreferences")
    class OutputSerializer(serializers.Serializer):
        email_enabled = serializers.BooleanField()
        sms_enabled = serializers.BooleanField()
        push_enabled = serializers.BooleanField()
        phone_number = serializers.CharField()
        active_channels = serializers.ListField(
            child=serializers.ChoiceField(choices=CHANNELS),
            help_text="The channels the next notification goes to: e-mail if on; SMS if on "
            "with a phone number; push if on with a subscription.",
        )
        vapid_public_key = serializers.CharField(
            help_text="Our VAPID public key, for pushManager.subscribe's "
            "applicationServerKey (base64url); empty if push is not configured."
        )

    def _answer(self, preferences) -> Response:  # type: ignore[no-untyped-def]
        data = {
            "email_enabled": preferences.email_enabled,
            "sms_enabled": preferences.sms_enabled,
            "push_enabled": preferences.push_enabled,
            "phone_number": preferences.phone_number,
            "active_channels": list(notification_channels_active(preferences=preferences)),
            "vapid_public_key": vapid_application_server_key(),
        }
        return Response(self.OutputSerializer(data).data)

    @extend_schema(
        operation_id="notification_preferences_retrieve", responses={200: OutputSerializer}
    )
    def get(self, request: Request) -> Response:
        return self._answer(notification_preferences_get(customer_id=request.user.pk))

    @extend_schema(
        operation_id="notification_preferences_update",
        request=InputSerializer,
        responses={200: OutputSerializer},
    )
    def put(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preferences = notification_preferences_update(
            customer=request.user, **serializer.validated_data
        )
        return self._answer(preferences)


@extend_schema_serializer(component_name="PushSubscription")
class PushSubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    endpoint = serializers.CharField()
    created_at = serializers.DateTimeField()


class PushSubscriptionCollectionApi(APIView):
    """`/api/push-subscriptions/`: GET the caller's subscriptions, POST one (what the
    browser's `PushSubscription.toJSON()` gives)."""

    @extend_schema_serializer(component_name="PushSubscriptionInput")
    class InputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="PushSubscriptionKeys")
        class KeysSerializer(serializers.Serializer):
            p256dh = StrictCharField(
                max_length=100,
                validators=[push_p256dh_validate],
                help_text="The browser's P-256 public key, base64url.",
            )
            auth = StrictCharField(
                max_length=50,
                validators=[push_auth_validate],
                help_text="The browser's auth secret, base64url.",
            )

        endpoint = StrictCharField(
            max_length=1000, help_text="The push service URL the browser was given."
        )
        keys = KeysSerializer()
        # Browsers add this to toJSON(); taken and ignored.
        expirationTime = StrictIntegerField(required=False, allow_null=True, min_value=0)

    @extend_schema(
        operation_id="push_subscriptions_list",
        responses={200: PushSubscriptionOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        subscriptions = push_subscription_list(customer_id=request.user.pk)
        return Response(PushSubscriptionOutputSerializer(subscriptions, many=True).data)

    @extend_schema(
        operation_id="push_subscriptions_create",
        request=InputSerializer,
        responses={
            201: PushSubscriptionOutputSerializer,
            200: PushSubscriptionOutputSerializer,
        },
        description="201 for a new subscription; 200 when the endpoint was registered "
        "already (its keys are updated).",
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        subscription, created = push_subscription_register(
            customer=request.user,
            endpoint=data["endpoint"],
            p256dh=data["keys"]["p256dh"],
            auth=data["keys"]["auth"],
        )
        return Response(
            PushSubscriptionOutputSerializer(subscription).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PushSubscriptionDetailApi(APIView):
    @extend_schema(operation_id="push_subscriptions_destroy", responses={204: None})
    def delete(self, request: Request, subscription_id: uuid.UUID) -> Response:
        if not push_subscription_delete(customer=request.user, subscription_id=subscription_id):
            raise NotFound("No such push subscription.")
        return Response(status=status.HTTP_204_NO_CONTENT)

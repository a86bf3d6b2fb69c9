"""`/api/webhooks/`: staff register, list, read, delete and re-enable webhook endpoints.
The secret is in the answer to the registration only."""

import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api_fields import StrictCharField
from common.pagination import PageNumberPagination
from webhooks.models import WebhookEndpoint
from webhooks.payloads import ALL_EVENTS, SUBSCRIBABLE_EVENT_TYPES
from webhooks.selectors import webhook_endpoint_get, webhook_endpoint_list
from webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_enable,
)
from webhooks.status import EndpointStatus


@extend_schema_serializer(component_name="WebhookEndpoint")
class EndpointOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=EndpointStatus.choices)
    disabled_reason = serializers.CharField(help_text="Why it was disabled; empty if active.")
    disabled_at = serializers.DateTimeField(allow_null=True)
    consecutive_failures = serializers.IntegerField(
        help_text="Attempts failed in a row since the last success."
    )
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="WebhookEndpointCreated")
class EndpointCreatedOutputSerializer(EndpointOutputSerializer):
    secret = serializers.CharField(
        help_text="The signing secret (`whsec_...`). Shown only in this answer: keep it."
    )


def _endpoint(endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = webhook_endpoint_get(endpoint_id=endpoint_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


class WebhookEndpointCollectionApi(APIView):
    """Staff: GET lists the endpoints (paginated), POST registers one."""

    permission_classes = [IsAdminUser]
    pagination_class = PageNumberPagination

    @extend_schema_serializer(component_name="WebhookEndpointInput")
    class InputSerializer(serializers.Serializer):
        url = StrictCharField(
            max_length=2000,
            help_text="Where deliveries are POSTed: https:// (http:// too, and private "
            "addresses, only where WEBHOOKS_ALLOW_PRIVATE is set).",
        )
        event_types = serializers.ListField(
            child=StrictCharField(max_length=64),
            max_length=len(SUBSCRIBABLE_EVENT_TYPES),
            help_text=f'Any of {", ".join(SUBSCRIBABLE_EVENT_TYPES)}; or ["{ALL_EVENTS}"] '
            "for every order event.",
        )

    @extend_schema(
        operation_id="webhooks_create",
        request=InputSerializer,
        responses={201: EndpointCreatedOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(**serializer.validated_data, created_by=request.user)
        return Response(
            EndpointCreatedOutputSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        operation_id="webhooks_list", responses={200: EndpointOutputSerializer(many=True)}
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(webhook_endpoint_list(), request, view=self)
        return paginator.get_paginated_response(EndpointOutputSerializer(page, many=True).data)


class WebhookEndpointDetailApi(APIView):
    """Staff: GET one endpoint, DELETE it (with its deliveries and their attempts)."""

    permission_classes = [IsAdminUser]

    @extend_schema(operation_id="webhooks_retrieve", responses={200: EndpointOutputSerializer})
    def get(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        return Response(EndpointOutputSerializer(_endpoint(endpoint_id)).data)

    @extend_schema(
        operation_id="webhooks_destroy",
        responses={204: OpenApiResponse(description="Deleted; nothing more is sent to it.")},
    )
    def delete(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        if not webhook_endpoint_delete(endpoint_id=endpoint_id):
            raise NotFound("No such webhook endpoint.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointEnableApi(APIView):
    """Staff: re-enable an endpoint disabled after persistent failure (a no-op if active)."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="webhooks_enable", request=None, responses={200: EndpointOutputSerializer}
    )
    def post(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = webhook_endpoint_enable(endpoint_id=endpoint_id)
        if endpoint is None:
            raise NotFound("No such webhook endpoint.")
        return Response(EndpointOutputSerializer(endpoint).data)

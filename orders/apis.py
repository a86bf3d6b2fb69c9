import uuid

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ecommerce.api_errors import ApiDomainError
from orders.selectors import order_get_for_customer, order_list_for_customer
from orders.services import IdempotencyKeyReused, OrderItemInput, order_create

IDEMPOTENCY_HEADER = "Idempotency-Key"


class OrderOutputSerializer(serializers.Serializer):
    class LineSerializer(serializers.Serializer):
        sku = serializers.CharField()
        product_name = serializers.CharField()
        quantity = serializers.IntegerField()
        unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

    id = serializers.UUIDField()
    status = serializers.CharField()
    status_reason = serializers.CharField()
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    items = LineSerializer(source="lines", many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class OrderCollectionApi(APIView):
    """`/api/orders/`: GET lists the caller's own orders (paginated), POST creates one."""

    # Declared on the view (not only instantiated in `get`) so the OpenAPI schema documents
    # the paginated envelope the list really returns.
    pagination_class = PageNumberPagination

    class InputSerializer(serializers.Serializer):
        class ItemSerializer(serializers.Serializer):
            sku = serializers.CharField(max_length=64)
            quantity = serializers.IntegerField(
                min_value=1, max_value=settings.ORDERS["MAX_QUANTITY_PER_LINE"]
            )

        items = ItemSerializer(
            many=True, allow_empty=False, max_length=settings.ORDERS["MAX_LINES"]
        )

        def validate_items(self, items: list[dict]) -> list[dict]:
            skus = [item["sku"] for item in items]
            duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
            if duplicates:
                raise serializers.ValidationError(
                    f"Each SKU may appear once; repeated: {', '.join(duplicates)}"
                )
            return items

    @extend_schema(
        operation_id="orders_create",
        request=InputSerializer,
        responses={201: OrderOutputSerializer},
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description="Retrying with the same key returns the same order.",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get(IDEMPOTENCY_HEADER) or None
        if key is not None and (len(key) > 200 or not key.isprintable()):
            raise ValidationError({IDEMPOTENCY_HEADER: ["At most 200 printable characters."]})
        try:
            order, created = order_create(
                customer=request.user,
                items=[OrderItemInput(**item) for item in serializer.validated_data["items"]],
                idempotency_key=key,
            )
        except IdempotencyKeyReused:
            raise ApiDomainError(
                {IDEMPOTENCY_HEADER: ["This key was already used with a different request."]},
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            ) from None
        response = Response(OrderOutputSerializer(order).data, status=status.HTTP_201_CREATED)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(operation_id="orders_list", responses={200: OrderOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            order_list_for_customer(customer=request.user), request, view=self
        )
        return paginator.get_paginated_response(OrderOutputSerializer(page, many=True).data)


class OrderDetailApi(APIView):
    @extend_schema(operation_id="orders_retrieve", responses={200: OrderOutputSerializer})
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = order_get_for_customer(customer=request.user, order_id=order_id)
        if order is None:
            raise NotFound("No such order.")
        return Response(OrderOutputSerializer(order).data)

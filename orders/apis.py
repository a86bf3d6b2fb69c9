import uuid

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.validators import MaxLengthValidator, MinLengthValidator, RegexValidator
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from common.api_errors import ApiDomainError
from common.api_fields import StrictCharField, StrictIntegerField
from common.api_schema import ErrorSerializer, FieldErrorsSerializer
from common.pagination import PageNumberPagination
from common.structured_logs import bind_contextvars
from common.throttling import OrderCreateRateThrottle
from orders.events import ShippingAddress
from orders.models import Order, SalesChannel
from orders.selectors import (
    order_get,
    order_get_for_customer,
    order_list_for_customer,
    order_list_held,
    order_status_now,
    order_timeline,
)
from orders.services import (
    IdempotencyKeyReused,
    OrderItemInput,
    order_cancel,
    order_create,
    order_deliver,
    order_ship,
)
from orders.status import TERMINAL, InvalidOrderTransition, OrderStatus
from orders.status_stream import order_status_events
from risk.selectors import risk_assessment_for_order, risk_assessments_for_orders
from risk.services import ReviewRefused, risk_review_approve, risk_review_reject

IDEMPOTENCY_HEADER = "Idempotency-Key"


class ShippingAddressSerializer(serializers.Serializer):
    """The limits of the orders.created contract's `ShippingAddress`, checked here first so
    that bad input is a 400 naming the field."""

    name = StrictCharField(max_length=200)
    line1 = StrictCharField(max_length=200)
    line2 = StrictCharField(max_length=200, required=False, default="", allow_blank=True)
    postal_code = StrictCharField(max_length=20)
    city = StrictCharField(max_length=100)
    country = StrictCharField(
        max_length=2,
        validators=[RegexValidator(r"^[A-Z]{2}$")],
        help_text="ISO 3166-1 alpha-2 code, e.g. DE.",
    )


@extend_schema_serializer(component_name="OrderStatusConflict")
class OrderStatusConflictSerializer(ErrorSerializer):
    """The order's status does not allow the action: why, and the status it is in."""

    status = serializers.ChoiceField(choices=OrderStatus.choices, help_text="Its status now.")


CONFLICT = OpenApiResponse(
    OrderStatusConflictSerializer, description="The order's status does not allow this."
)


class OrderOutputSerializer(serializers.Serializer):
    class LineSerializer(serializers.Serializer):
        sku = serializers.CharField()
        product_name = serializers.CharField()
        quantity = serializers.IntegerField()
        unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

    id = serializers.UUIDField()
    status = serializers.CharField()
    status_reason = serializers.CharField()
    total = serializers.DecimalField(max_digits=18, decimal_places=2)
    currency = serializers.CharField()
    sales_channel = serializers.ChoiceField(choices=SalesChannel.choices)
    shipping_address = ShippingAddressSerializer(allow_null=True)

    class PaymentSerializer(serializers.Serializer):
        status = serializers.CharField()
        amount = serializers.DecimalField(max_digits=18, decimal_places=2)
        failure_reason = serializers.CharField()

    class ShipmentSerializer(serializers.Serializer):
        carrier = serializers.CharField()
        tracking_number = serializers.CharField()
        shipped_at = serializers.DateTimeField()
        delivered_at = serializers.DateTimeField(allow_null=True)

    items = LineSerializer(source="lines", many=True)
    payment = PaymentSerializer(allow_null=True, default=None)
    shipment = ShipmentSerializer(allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class OrderDetailOutputSerializer(OrderOutputSerializer):
    class TimelineEntrySerializer(serializers.Serializer):
        event_id = serializers.UUIDField()
        event_type = serializers.CharField()
        occurred_at = serializers.DateTimeField(source="created_at")
        correlation_id = serializers.CharField()
        published = serializers.BooleanField(source="is_published")

    timeline = serializers.SerializerMethodField()

    @extend_schema_field(TimelineEntrySerializer(many=True))
    def get_timeline(self, order) -> list[dict]:  # type: ignore[no-untyped-def]
        return self.TimelineEntrySerializer(order_timeline(order_id=order.id), many=True).data


class OrderCollectionApi(APIView):
    """`/api/orders/`: GET lists the caller's own orders (paginated), POST creates one."""

    # Declared on the view (not only instantiated in `get`) so the OpenAPI schema documents
    # the paginated envelope the list really returns.
    pagination_class = PageNumberPagination

    def get_throttles(self) -> list[BaseThrottle]:
        # Creating orders has its own limit, on top of the customer's limit on the whole API.
        return [*super().get_throttles(), OrderCreateRateThrottle()]

    class InputSerializer(serializers.Serializer):
        class ItemSerializer(serializers.Serializer):
            sku = StrictCharField(max_length=64)
            quantity = StrictIntegerField(
                min_value=1, max_value=settings.ORDERS["MAX_QUANTITY_PER_LINE"]
            )

        payment_token = StrictCharField(
            max_length=100,
            required=False,
            default="",
            allow_blank=True,
            help_text="Opaque token from the payment form (fake provider: tok_decline declines).",
        )
        sales_channel = serializers.ChoiceField(
            choices=SalesChannel.choices, required=False, default=SalesChannel.WEB
        )
        shipping_address = ShippingAddressSerializer(
            required=False,
            allow_null=True,
            default=None,
            help_text="Where the order goes; leave out (or null) for orders that ship nowhere.",
        )

        items = serializers.ListSerializer(
            child=ItemSerializer(),
            allow_empty=False,
            max_length=settings.ORDERS["MAX_LINES"],
            # The same limits as validators, so the OpenAPI schema shows minItems/maxItems.
            validators=[MinLengthValidator(1), MaxLengthValidator(settings.ORDERS["MAX_LINES"])],
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
        responses={
            201: OrderOutputSerializer,
            422: OpenApiResponse(
                FieldErrorsSerializer,
                description=f"This {IDEMPOTENCY_HEADER} was already used with a different request.",
            ),
        },
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
        data = serializer.validated_data
        address = data["shipping_address"]
        try:
            order, created = order_create(
                customer=request.user,
                items=[OrderItemInput(**item) for item in data["items"]],
                idempotency_key=key,
                payment_token=data["payment_token"],
                sales_channel=data["sales_channel"],
                shipping_address=ShippingAddress(**address) if address else None,
            )
        except IdempotencyKeyReused:
            raise ApiDomainError(
                {IDEMPOTENCY_HEADER: ["This key was already used with a different request."]},
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            ) from None
        bind_contextvars(order_id=str(order.id))  # on the request's log line
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


def _order_of_caller(request: Request, order_id: uuid.UUID) -> Order:
    order = order_get_for_customer(customer=request.user, order_id=order_id)
    if order is None:
        raise NotFound("No such order.")
    return order


def _conflict(exc: InvalidOrderTransition) -> ApiDomainError:
    return ApiDomainError(
        {"detail": str(exc), "status": exc.current}, status_code=status.HTTP_409_CONFLICT
    )


class OrderDetailApi(APIView):
    @extend_schema(operation_id="orders_retrieve", responses={200: OrderDetailOutputSerializer})
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = _order_of_caller(request, order_id)
        return Response(OrderDetailOutputSerializer(order).data)


class OrderCancelApi(APIView):
    """The customer cancels an own order; allowed until it ships (then 409)."""

    @extend_schema(
        operation_id="orders_cancel",
        request=None,
        responses={200: OrderDetailOutputSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        order = _order_of_caller(request, order_id)
        try:
            order = order_cancel(order_id=order.id, actor="customer")
        except InvalidOrderTransition as exc:
            raise _conflict(exc) from None
        return Response(OrderDetailOutputSerializer(order).data)


class OrderShipApi(APIView):
    """Staff: hand a paid order to the carrier (creates the shipment and tracking number)."""

    permission_classes = [IsAdminUser]

    @extend_schema_serializer(component_name="OrderShipInput")
    class InputSerializer(serializers.Serializer):
        carrier = StrictCharField(max_length=50, required=False, default="")

    @extend_schema(
        operation_id="orders_ship",
        request=InputSerializer,
        responses={200: OrderDetailOutputSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            order = order_ship(order_id=order_id, carrier=serializer.validated_data["carrier"])
        except Order.DoesNotExist:
            raise NotFound("No such order.") from None
        except InvalidOrderTransition as exc:
            raise _conflict(exc) from None
        return Response(OrderDetailOutputSerializer(order).data)


class OrderDeliverApi(APIView):
    """Staff: record that the carrier delivered a shipped order."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="orders_deliver",
        request=None,
        responses={200: OrderDetailOutputSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        try:
            order = order_deliver(order_id=order_id)
        except Order.DoesNotExist:
            raise NotFound("No such order.") from None
        except InvalidOrderTransition as exc:
            raise _conflict(exc) from None
        return Response(OrderDetailOutputSerializer(order).data)


EVENT_STREAM = "text/event-stream"
LAST_EVENT_ID_HEADER = "Last-Event-ID"


class JSONErrorsNegotiation(BaseContentNegotiation):
    """The stream's refusals are JSON whatever Accept says; the view checks Accept itself,
    after authentication, so that an anonymous caller gets 401 before 406."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type

    def select_parser(self, request: Request, parsers: list) -> None:  # type: ignore[type-arg]
        return None


def _accepts_event_stream(request: Request) -> bool:
    return any(
        media.main_type == "text" and media.sub_type == "event-stream"
        for media in request._request.accepted_types
    )


STREAM_DESCRIPTION = """The order's status as Server-Sent Events (`Accept: text/event-stream`).

Each event is `id: <n>` (the order's n-th status; 1 is `pending`), `event: status` and
`data:` JSON (`order_id`, `status`, `reason`, `at`). First the status now, then each change as
it happens, a `: keep-alive` comment every 15 s, and the stream ends after a final status
(rejected, cancelled, expired, delivered). A reconnect with `Last-Event-ID: <n>` gets every
change after the n-th, none twice; 204 when the n-th was already final."""

STREAM_EXAMPLE = (
    'retry: 3000\n\nid: 1\nevent: status\ndata: {"order_id":"6f1c2b4e-8c1f-4a52-9a39-'
    '2f7d0c9a1b11","status":"pending","reason":"","at":"2026-11-23T23:17:39.120000+00:00"}\n\n'
)


class OrderStatusEventsApi(APIView):
    """`GET /api/orders/{id}/events/`: the customer's own order's status, live (see
    orders/status_stream.py). Served by the ASGI stream process, where it runs on the
    streams' database threads (orders.urls); a sync (WSGI) server answers 503 rather than
    pin one of its threads for the life of a stream."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONErrorsNegotiation

    @extend_schema(
        operation_id="orders_events",
        description=STREAM_DESCRIPTION,
        parameters=[
            OpenApiParameter(
                LAST_EVENT_ID_HEADER,
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                description="Resume: the id of the last event received.",
            )
        ],
        responses={
            (200, EVENT_STREAM): OpenApiResponse(
                OpenApiTypes.STR,
                description="The order's status events.",
                examples=[OpenApiExample("A fresh order", value=STREAM_EXAMPLE)],
            ),
            204: OpenApiResponse(
                None,
                description="The event of Last-Event-ID was the order's final status: "
                "nothing more will come (EventSource stops reconnecting).",
            ),
            406: OpenApiResponse(
                ErrorSerializer,
                description="The Accept header does not name `text/event-stream`.",
            ),
            503: OpenApiResponse(
                ErrorSerializer, description="This server does not serve streams."
            ),
        },
    )
    def get(self, request: Request, order_id: uuid.UUID) -> HttpResponse:
        if not _accepts_event_stream(request):
            raise ApiDomainError(
                {"detail": f"This is an event stream: send Accept: {EVENT_STREAM}."},
                status_code=status.HTTP_406_NOT_ACCEPTABLE,
            )
        after = self._last_event_id(request)
        now = order_status_now(order_id=order_id, customer=request.user)
        if now is None:
            raise NotFound("No such order.")
        if after is not None and after > now.seq:
            after = None  # not an id of this order's: start again from its status now
        if after is not None and after >= now.seq and now.status in TERMINAL:
            return HttpResponse(status=status.HTTP_204_NO_CONTENT)
        if not isinstance(request._request, ASGIRequest):
            raise ApiDomainError(
                {"detail": "Live order status is served by the stream service."},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return StreamingHttpResponse(
            order_status_events(order_id=order_id, after=after),
            content_type=EVENT_STREAM,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @staticmethod
    def _last_event_id(request: Request) -> int | None:
        raw = request.headers.get(LAST_EVENT_ID_HEADER)
        if raw is None or raw == "":
            return None
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise ValidationError(
                {LAST_EVENT_ID_HEADER: ["The id of an event of this stream: a whole number."]}
            )
        return int(raw)


class RiskAssessmentSerializer(serializers.Serializer):
    """What the risk check decided about an order, and the staff review of a hold."""

    class RuleSerializer(serializers.Serializer):
        rule = serializers.CharField()
        points = serializers.IntegerField()
        reason = serializers.CharField()

    score = serializers.IntegerField()
    decision = serializers.CharField(help_text="approve, hold or block")
    reasons = serializers.ListField(child=serializers.CharField())
    rules = RuleSerializer(many=True)
    review_score = serializers.IntegerField()
    block_score = serializers.IntegerField()
    assessed_at = serializers.DateTimeField()
    review = serializers.CharField(help_text='"approved", "rejected", or "" (not reviewed)')
    reviewed_by = serializers.CharField()
    reviewed_at = serializers.DateTimeField(allow_null=True)


def _risk(serializer: serializers.Serializer, order: Order) -> dict | None:
    # A page of orders passes their assessments, read in one query.
    known = serializer.context.get("risk_assessments")
    if known is not None:
        assessment = known.get(order.id)
    else:
        assessment = risk_assessment_for_order(order_id=order.id)
    return None if assessment is None else RiskAssessmentSerializer(assessment).data


class OrderWithRiskOutputSerializer(OrderOutputSerializer):
    """An order with its risk assessment (no timeline): for staff only."""

    risk = serializers.SerializerMethodField()

    @extend_schema_field(RiskAssessmentSerializer(allow_null=True))
    def get_risk(self, order: Order) -> dict | None:
        return _risk(self, order)


class OrderRiskOutputSerializer(OrderDetailOutputSerializer):
    """An order, its timeline and its risk assessment: for staff only (customers never see
    the rules)."""

    risk = serializers.SerializerMethodField()

    @extend_schema_field(RiskAssessmentSerializer(allow_null=True))
    def get_risk(self, order: Order) -> dict | None:
        return _risk(self, order)


class OrderRiskApi(APIView):
    """Staff: any order with its risk assessment (every rule's points and reason)."""

    permission_classes = [IsAdminUser]

    @extend_schema(operation_id="orders_risk", responses={200: OrderRiskOutputSerializer})
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = order_get(order_id=order_id)
        if order is None:
            raise NotFound("No such order.")
        return Response(OrderRiskOutputSerializer(order).data)


class OrderHeldListApi(APIView):
    """Staff: the orders the risk check held, waiting for a review, oldest first."""

    permission_classes = [IsAdminUser]
    pagination_class = PageNumberPagination

    @extend_schema(
        operation_id="orders_held_list", responses={200: OrderWithRiskOutputSerializer(many=True)}
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(order_list_held(), request, view=self)
        assessments = risk_assessments_for_orders(order_ids=[order.id for order in page])
        output = OrderWithRiskOutputSerializer(
            page, many=True, context={"risk_assessments": assessments}
        )
        return paginator.get_paginated_response(output.data)


class _OrderRiskReviewApi(APIView):
    """Staff: decide on an order the risk check held (`held`)."""

    permission_classes = [IsAdminUser]

    def review(self, request: Request, order_id: uuid.UUID) -> Order:
        raise NotImplementedError

    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        try:
            order = self.review(request, order_id)
        except Order.DoesNotExist:
            raise NotFound("No such order.") from None
        except InvalidOrderTransition as exc:
            raise _conflict(exc) from None
        except ReviewRefused as exc:
            raise ApiDomainError(
                {"detail": str(exc), "status": OrderStatus.HELD},
                status_code=status.HTTP_409_CONFLICT,
            ) from None
        return Response(OrderRiskOutputSerializer(order).data)


class OrderApproveApi(_OrderRiskReviewApi):
    """Staff: approve a held order after its risk review; it goes back to `reserved` and is
    charged (then `paid`, or cancelled if the card is declined)."""

    @extend_schema(
        operation_id="orders_approve",
        request=None,
        responses={200: OrderRiskOutputSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        return super().post(request, order_id)

    def review(self, request: Request, order_id: uuid.UUID) -> Order:
        return risk_review_approve(order_id=order_id, reviewer=request.user.get_username())


class OrderRejectApi(_OrderRiskReviewApi):
    """Staff: reject a held order after its risk review; it is cancelled and its stock
    released. (Not the `rejected` status, which means out of stock.)"""

    @extend_schema(
        operation_id="orders_reject",
        request=None,
        responses={200: OrderRiskOutputSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        return super().post(request, order_id)

    def review(self, request: Request, order_id: uuid.UUID) -> Order:
        return risk_review_reject(order_id=order_id, reviewer=request.user.get_username())

"""Staff API of the read side: orders per minute and the read models."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reporting.selectors import (
    customer_summary_list,
    order_rate_since,
    order_rate_windows_recent,
    product_sales_list,
)


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """The validated query parameters (400 naming the field otherwise). Read from a plain
    dict: DRF takes an empty field of a QueryDict (`?until=`) as one not given at all."""
    query = serializer_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    return query.validated_data


# A day of one-minute windows.
ORDER_RATE_MAX_MINUTES = 24 * 60


class OrderRateApi(APIView):
    """Orders per minute over the last `minutes` minutes, as published on
    metrics.order.rate: one entry per closed minute that had orders (event time)."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        minutes = serializers.IntegerField(
            min_value=1,
            max_value=ORDER_RATE_MAX_MINUTES,
            default=60,
            help_text="How many one-minute windows back from now, the current one included.",
        )

    @extend_schema_serializer(component_name="OrderRate")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="OrderRateWindow")
        class WindowSerializer(serializers.Serializer):
            window_start = serializers.DateTimeField()
            window_end = serializers.DateTimeField()
            orders = serializers.IntegerField()
            late_orders = serializers.IntegerField(
                help_text="Arrived after the window closed, within the allowed lateness; "
                "included in orders."
            )
            too_late_orders = serializers.IntegerField(
                help_text="Arrived beyond the allowed lateness: counted apart, not in orders."
            )
            revision = serializers.IntegerField()

        minutes = serializers.IntegerField()
        since = serializers.DateTimeField()
        orders = serializers.IntegerField()
        too_late_orders = serializers.IntegerField()
        windows = WindowSerializer(many=True)

    @extend_schema(
        operation_id="metrics_order_rate",
        parameters=[InputSerializer],
        responses={200: OutputSerializer},
    )
    def get(self, request: Request) -> Response:
        minutes = _query(self.InputSerializer, request)["minutes"]
        windows = list(order_rate_windows_recent(minutes=minutes))
        body = {
            "minutes": minutes,
            "since": order_rate_since(minutes=minutes),
            "orders": sum(window.orders for window in windows),
            "too_late_orders": sum(window.too_late_orders for window in windows),
            "windows": windows,
        }
        return Response(self.OutputSerializer(body).data)


class ProductSalesApi(ListAPIView):
    """Sales per product per day (UTC): units and revenue of orders paid that day, units and
    amounts refunded that day (paid orders cancelled). Newest day first."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        since = serializers.DateField(required=False, help_text="First day, YYYY-MM-DD.")
        until = serializers.DateField(required=False, help_text="Last day, YYYY-MM-DD.")
        sku = serializers.CharField(required=False, max_length=64, default="")

        def validate(self, data: dict) -> dict:
            if data.get("since") and data.get("until") and data["since"] > data["until"]:
                raise serializers.ValidationError({"until": ["Must not be before since."]})
            return data

    @extend_schema_serializer(component_name="ProductDailySales")
    class OutputSerializer(serializers.Serializer):
        day = serializers.DateField()
        sku = serializers.CharField()
        currency = serializers.CharField()
        units_sold = serializers.IntegerField()
        revenue = serializers.DecimalField(max_digits=18, decimal_places=2)
        units_refunded = serializers.IntegerField()
        refunds = serializers.DecimalField(max_digits=18, decimal_places=2)

    serializer_class = OutputSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return product_sales_list(**_query(self.InputSerializer, self.request))

    @extend_schema(operation_id="reports_product_sales", parameters=[InputSerializer])
    def get(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        return super().get(request, *args, **kwargs)


class CustomerSummaryApi(ListAPIView):
    """Per-customer summaries: orders placed, how many are in each status now, and lifetime
    value (paid orders, less refunds). Highest lifetime value first."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        customer_id = serializers.IntegerField(required=False, min_value=1)

    @extend_schema_serializer(component_name="CustomerOrderSummary")
    class OutputSerializer(serializers.Serializer):
        customer_id = serializers.IntegerField()
        currency = serializers.CharField()
        orders_placed = serializers.IntegerField()
        orders_by_status = serializers.DictField(child=serializers.IntegerField())
        lifetime_value = serializers.DecimalField(max_digits=18, decimal_places=2)
        first_order_at = serializers.DateTimeField(allow_null=True)
        last_order_at = serializers.DateTimeField(allow_null=True)

    serializer_class = OutputSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return customer_summary_list(**_query(self.InputSerializer, self.request))

    @extend_schema(operation_id="reports_customers", parameters=[InputSerializer])
    def get(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        return super().get(request, *args, **kwargs)

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView

from common.api_lists import FlatRowsSerializer
from inventory.selectors import product_list_available


class ProductListApi(ListAPIView):
    """Active products with the stock available to order right now."""

    class OutputSerializer(serializers.Serializer):
        sku = serializers.CharField()
        name = serializers.CharField()
        price = serializers.DecimalField(max_digits=12, decimal_places=2)
        available = serializers.IntegerField()

        class Meta:
            list_serializer_class = FlatRowsSerializer

    serializer_class = OutputSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return product_list_available()

    @extend_schema(operation_id="products_list")
    def get(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        return super().get(request, *args, **kwargs)

"""FlatRowsSerializer renders a page exactly as DRF's ListSerializer does, and refuses a
serializer whose fields are not flat."""

from dataclasses import dataclass
from decimal import Decimal

import pytest
from rest_framework import serializers

from common.api_lists import FlatRowsSerializer


class RowSerializer(serializers.Serializer):
    sku = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    available = serializers.IntegerField()
    label = serializers.CharField(source="name", allow_null=True)
    secret = serializers.CharField(write_only=True)


class FlatRowSerializer(RowSerializer):
    class Meta:
        list_serializer_class = FlatRowsSerializer


@dataclass
class Row:
    sku: str
    price: Decimal
    available: int
    name: str | None


def test_a_page_of_dicts_or_objects_renders_as_drf_renders_it():
    dicts = [
        {"sku": "A-1", "price": Decimal("12.5"), "available": 3, "name": "Mug", "secret": "x"},
        {"sku": "B-2", "price": Decimal("0.999"), "available": 0, "name": None, "secret": "y"},
    ]
    objects = [Row(d["sku"], d["price"], d["available"], d["name"]) for d in dicts]

    for rows in (dicts, objects):
        flat = FlatRowSerializer(rows, many=True).data
        assert isinstance(FlatRowSerializer(rows, many=True), FlatRowsSerializer)
        assert flat == RowSerializer(rows, many=True).data
        assert flat[0] == {"sku": "A-1", "price": "12.50", "available": 3, "label": "Mug"}
        assert flat[1]["label"] is None and flat[1]["price"] == "1.00"


def test_a_nested_or_dotted_field_is_refused():
    class Nested(serializers.Serializer):
        row = RowSerializer()

        class Meta:
            list_serializer_class = FlatRowsSerializer

    class Dotted(serializers.Serializer):
        city = serializers.CharField(source="address.city")

        class Meta:
            list_serializer_class = FlatRowsSerializer

    with pytest.raises(TypeError, match="row: not a flat field"):
        _ = Nested([], many=True).data
    with pytest.raises(TypeError, match="city: a source of one key or attribute only"):
        _ = Dotted([], many=True).data

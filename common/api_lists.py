"""Lists of flat rows rendered by their serializer's fields, in a loop written for them.

A read-only serializer of flat rows (each field reads one key of a dict or one attribute
of an object) renders a page with `many=True` through DRF's `ListSerializer`: for every
row, a generator of readable fields and a source lookup per field through `get_attribute`.
On the product list that machinery cost half of the view's CPU. `FlatRowsSerializer` keeps
the fields (their `to_representation` formats each value, and the OpenAPI schema is
unchanged) and only replaces the loop: the fields are listed once per page.

Use it as the list class of such a serializer::

    class OutputSerializer(serializers.Serializer):
        class Meta:
            list_serializer_class = FlatRowsSerializer
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rest_framework import serializers


class FlatRowsSerializer(serializers.ListSerializer):
    def to_representation(self, data: Iterable[Any]) -> list[dict[str, Any]]:
        fields = self._flat_fields()
        return [
            {
                name: None if (value := _read(row, source)) is None else render(value)
                for name, source, render in fields
            }
            for row in data
        ]

    def _flat_fields(self) -> list[tuple[str, str, Callable[[Any], Any]]]:
        fields = []
        for field in self.child._readable_fields:
            if isinstance(field, serializers.BaseSerializer | serializers.SerializerMethodField):
                raise TypeError(f"{field.field_name}: not a flat field")
            if len(field.source_attrs) != 1:
                raise TypeError(f"{field.field_name}: a source of one key or attribute only")
            fields.append((field.field_name, field.source_attrs[0], field.to_representation))
        return fields


def _read(row: Any, source: str) -> Any:
    return row[source] if isinstance(row, Mapping) else getattr(row, source)

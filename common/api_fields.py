"""Serializer fields that take JSON values as they come. DRF's own fields convert: "2" is
accepted as the integer 2, and 2 as the string "2". The API answers a value of the wrong
JSON type with 400 instead, as its schema says (the API takes JSON bodies only)."""

from typing import Any

from rest_framework import serializers


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: a string, a float (even 2.0) or a boolean is refused."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string: a number or a boolean is refused."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean: "true", 1 or "yes" is refused."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

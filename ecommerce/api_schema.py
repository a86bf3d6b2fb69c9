"""The OpenAPI schema (drf-spectacular): what every operation can answer besides its own
responses. Kept apart from ecommerce.api_errors, which DRF's settings import early."""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The body of an error that is not about fields (401, 403, 404, 429, ...)."""

    detail = serializers.CharField()


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, plus the 429 that every rate-limited operation can answer
    (ecommerce.throttling), with its Retry-After header."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if self.view.get_throttles():
            responses["429"] = {
                **self._get_response_for_code(ErrorSerializer, "429", direction=direction),
                "description": "Rate limit reached: retry after Retry-After seconds.",
                "headers": {
                    "Retry-After": {
                        "schema": {"type": "integer", "minimum": 1},
                        "description": "Seconds until a request would be accepted again.",
                        "required": True,
                    }
                },
            }
        return responses

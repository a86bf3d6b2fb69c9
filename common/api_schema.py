"""The OpenAPI schema (drf-spectacular): every answer an operation can give, errors included,
so that a client generated from the schema knows each one. Kept apart from
common.api_errors, which DRF's settings import early.

Errors come in the API's one error format (common.api_errors): `{"detail": "..."}`
(component `Error`), or, for invalid input, the messages by field (component
`FieldErrors`). `AutoSchema` declares what the framework answers on its own (400, 401, 403,
404, 406, 413, 415, 429), and what gunicorn answers before the application runs (400, 414,
431; common.http_worker); an operation declares its own refusals (409, 422) with
`@extend_schema(responses=...)`, using these serializers.
"""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The body of an error that is not about fields (401, 403, 404, 429, ...)."""

    detail = serializers.CharField()


class FieldErrorsSerializer(serializers.Serializer):
    """The body of invalid input: its schema is FieldErrorsExtension's (a serializer cannot
    say "any field name"). Use it in `@extend_schema(responses=...)`."""


class FieldErrorsExtension(OpenApiSerializerExtension):
    target_class = FieldErrorsSerializer

    def get_name(self, auto_schema: Any = None, direction: Any = None) -> str:
        return "FieldErrors"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        itself = {"$ref": "#/components/schemas/FieldErrors"}
        return {
            "type": "object",
            "description": (
                "Messages by the name of the request field they are about; "
                "`non_field_errors` for the request as a whole. Nested objects and lists "
                "are answered in the shape of the request: a list of items gives one "
                "object per item, empty for the valid ones."
            ),
            "additionalProperties": {
                "anyOf": [
                    {"type": "array", "items": {"type": "string"}},
                    itself,
                    {"type": "array", "items": itself},
                ]
            },
            "example": {"items": [{}, {"quantity": ["A valid integer is required."]}]},
        }


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, plus the errors the framework answers on its own, each with
    its body. An operation's own declaration of a code (`@extend_schema`) wins."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, (body, description, headers) in self._framework_errors().items():
            if code not in responses:
                response = self._get_response_for_code(body, code, direction=direction)
                responses[code] = {**response, "description": description, **headers}
        return responses

    def _framework_errors(self) -> dict[str, tuple[Any, str, dict[str, Any]]]:
        """Status code → (body, description, extra response fields) for this operation."""
        errors: dict[str, tuple[Any, str, dict[str, Any]]] = {}
        permissions = self.view.get_permissions()
        has_body = (
            self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        )
        # Parameters declared on the operation (query fields, headers) are validated by it.
        if has_body or self.get_override_parameters():
            bodies = [self._component(FieldErrorsSerializer), self._component(ErrorSerializer)]
            errors["400"] = (
                {"anyOf": bodies},
                "Invalid input: messages by field (`FieldErrors`), or `detail` for a body "
                "that is not valid JSON or a request line or header that cannot be parsed.",
                {},
            )
        if has_body:
            errors["413"] = (
                ErrorSerializer,
                "The request body is larger than the server takes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
                {},
            )
            errors["415"] = (ErrorSerializer, "The body is not `application/json`.", {})
        if not all(isinstance(permission, AllowAny) for permission in permissions):
            errors["401"] = (
                ErrorSerializer,
                "No credentials, or credentials that are not valid (unknown, expired or "
                "revoked token).",
                {
                    "headers": {
                        "WWW-Authenticate": {
                            "schema": {"type": "string", "example": "Token"},
                            "description": "How to authenticate: `Token`.",
                            "required": True,
                        }
                    }
                },
            )
        forbidden = []
        if any(not isinstance(p, (AllowAny, IsAuthenticated)) for p in permissions):
            forbidden.append("staff only")
        if self.method not in SAFE_METHODS and any(
            isinstance(authenticator, SessionAuthentication)
            for authenticator in self.view.get_authenticators()
        ):
            forbidden.append("with session authentication, a missing or wrong CSRF token")
        if forbidden:
            errors["403"] = (ErrorSerializer, f"Not allowed: {'; '.join(forbidden)}.", {})
        if "{" in self.path or (self._is_list_view() and self._get_paginator() is not None):
            errors["404"] = (
                ErrorSerializer,
                "Not found: no such object for the caller (or an id that is not one), or "
                "no such page.",
                {},
            )
        # What gunicorn answers before the application sees the request
        # (common.http_worker: in this error format too).
        errors.setdefault(
            "400",
            (ErrorSerializer, "A request line or header that cannot be parsed.", {}),
        )
        errors["414"] = (
            ErrorSerializer,
            "The request line (method, URL and query) is longer than the server takes "
            "(gunicorn's limit_request_line, 4,094 bytes).",
            {},
        )
        errors["431"] = (
            ErrorSerializer,
            "Request headers over the server's limits (their number, or one header's size).",
            {},
        )
        errors["406"] = (ErrorSerializer, "The Accept header allows no `application/json`.", {})
        if self.view.get_throttles():
            errors["429"] = (
                ErrorSerializer,
                "Rate limit reached: retry after Retry-After seconds.",
                {
                    "headers": {
                        "Retry-After": {
                            "schema": {"type": "integer", "minimum": 1},
                            "description": "Seconds until a request would be accepted again.",
                            "required": True,
                        }
                    }
                },
            )
        return errors

    def _component(self, serializer: type[serializers.Serializer]) -> dict[str, str]:
        return self.resolve_serializer(serializer(), "response").ref

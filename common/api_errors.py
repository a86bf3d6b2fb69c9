"""One error shape for the API: DRF's field errors, plus domain errors mapped to 4xx."""

from typing import Any

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, parsers, status
from rest_framework.response import Response


class ApiDomainError(exceptions.APIException):
    """Raised by views when a service refuses an action; carries its own status code."""

    def __init__(self, detail: Any, status_code: int = status.HTTP_409_CONFLICT) -> None:
        super().__init__(detail)
        self.status_code = status_code


class RequestBodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, except that a body nested too deeply for Python's decoder is a 400
    like any other malformed JSON instead of an uncaught RecursionError (a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES while it is imported,
    # which names this module, so a module-level import fails whenever this module is
    # imported before DRF's views (a script, a shell, a test importing it first).
    from rest_framework.views import exception_handler as drf_exception_handler

    # Django refuses an oversized body or form when DRF first reads it; unhandled, that is
    # Django's HTML 400 page and an ERROR traceback in the log.
    if isinstance(exc, RequestDataTooBig):
        exc = RequestBodyTooLarge(
            f"Request body too large: at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        )
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = exceptions.ParseError(str(exc))
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    return drf_exception_handler(exc, context)

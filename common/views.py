from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import page_not_found
from rest_framework.exceptions import NotFound

from common.health import OK, readiness_check


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the web process answers. Touches no database, broker or Redis, so the
    benchmark also uses it to measure the HTTP path alone (load generator + gunicorn)."""
    return HttpResponse(b"ok", content_type="text/plain")


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, Redis and Kafka all answer in time, else 503 with
    the ones that did not under "down"."""
    checks = readiness_check()
    down = sorted(name for name, result in checks.items() if result != OK)
    if down:
        return JsonResponse({"status": "unavailable", "down": down, "checks": checks}, status=503)
    return JsonResponse({"status": "ready", "checks": checks})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 handler: JSON in the API's error format under /api/ (the schema declares
    it), Django's own page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": str(NotFound.default_detail)}, status=404)
    return page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 handler (e.g. a Host header not in ALLOWED_HOSTS, before any view runs):
    JSON in the API's error format under /api/, Django's own page elsewhere."""
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": "Bad Request"}, status=400)
        # Refused inside CommonMiddleware, whose response handling would have set it.
        response["Content-Length"] = str(len(response.content))
        return response
    return django_bad_request(request, exception)

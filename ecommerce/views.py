from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the web process answers. Touches no database, broker or Redis, so the
    benchmark also uses it to measure the HTTP path alone (load generator + gunicorn)."""
    return HttpResponse(b"ok", content_type="text/plain")

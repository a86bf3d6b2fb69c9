"""The benchmark's WSGI application: the project's own, plus one bench-only URL.

gunicorn serves `tools.bench.bare:application` in the benchmark: the same settings,
middleware and URLs as `ecommerce.wsgi:application`, and `GET /api/bench/bare/`, a minimal
authenticated DRF view (the project's token authentication and permission, a tiny JSON
answer). It is the baseline the API's own views are compared with in the same run: what
gunicorn, the middleware, DRF and authentication cost before a view does anything.

It lives in tools/, which is neither installed nor in the Docker image, so the URL exists in
no deployment.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")
application = get_wsgi_application()  # first: the imports below need the apps loaded

from django.conf import settings  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from common.views import bad_request, not_found  # noqa: E402

BARE_PATH = "/api/bench/bare/"


class BareApi(APIView):
    """Authenticated (the API's default classes), answers `{"ok": true}`."""

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns: list[Any] = [
    path(BARE_PATH.lstrip("/"), BareApi.as_view(), name="bench-bare"),
    path("", include("ecommerce.urls")),
]
# Under /api/, an unknown URL answers in the API's error format, as in ecommerce.urls.
handler404 = not_found
handler400 = bad_request
# Django reads ROOT_URLCONF at each request: from the first one on, this module's.
settings.ROOT_URLCONF = __name__

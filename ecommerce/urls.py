from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from common.metrics import metrics
from common.views import bad_request, healthz, not_found, readyz
from reporting.dashboard import pipeline_dashboard

# Under /api/, a URL that is no route (an unknown path, a malformed order id) answers in the
# API's error format; elsewhere Django's page. So is a request Django refuses before any view
# (400: a Host header not allowed). (With DJANGO_DEBUG Django shows its debug page.)
handler404 = not_found
handler400 = bad_request

urlpatterns = [
    path("healthz/", healthz, name="healthz"),
    path("readyz/", readyz, name="readyz"),
    *(
        # Where Prometheus looks by default (no trailing slash): every gunicorn worker's figures.
        [path("metrics", metrics, name="metrics")] if settings.METRICS_ENABLED else []
    ),
    # Staff only (admin_view: the admin's login and is_staff check).
    path("admin/pipeline/", admin.site.admin_view(pipeline_dashboard), name="admin-pipeline"),
    path("admin/", admin.site.urls),
    path("api/", include("orders.urls")),
    path("api/", include("inventory.urls")),
    path("api/", include("reporting.urls")),
    path("api/", include("webhooks.urls")),
    path("api/", include("notifications.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="common/redoc.html"),
        name="redoc",
    ),
]

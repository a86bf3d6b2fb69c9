"""ASGI entry point: the stream process (`uvicorn ecommerce.asgi:application`), which serves
the live order status (`/api/orders/{id}/events/`) without a thread per open stream, and
`make run`, which serves the whole project from it. The rest of the API runs under gunicorn
in production (`ecommerce.wsgi`).

With DJANGO_DEBUG (`make run`), it serves the static files too, as runserver would."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")

application = get_asgi_application()

if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

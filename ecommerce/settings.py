"""Django settings, read once from the environment through django-environ.

Every value has a safe default for local runs (`make run`); production sets them through
the environment (see docker-compose.yml). Secrets never live in this file.
"""

import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from common.structured_logs import LOG_FORMATS, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The default key is only good for local runs; production must set DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-local-development-key-change-me")
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)

# --- HTTPS (production) -----------------------------------------------------------------
# Production runs behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips
# any such header a client sent). DJANGO_SECURE=true makes `manage.py check --deploy`
# clean; `make run` leaves it off and stays plain HTTP.
SECURE = env.bool("DJANGO_SECURE", default=False)
if SECURE:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Health checks and Prometheus come over plain HTTP from inside the host or cluster,
    # not via the proxy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz/$", r"^readyz/$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# Client addresses (rate limits, login lockouts): REMOTE_ADDR, or with this many proxies in
# front, the address the outermost of them saw (X-Forwarded-For, counted from the right).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI and Redoc served from our own static files: /api/docs/ works offline.
    "drf_spectacular_sidecar",
    "axes",
    # The platform: plumbing shared by the web tier and the workers, then the messaging
    # library (outbox, relay, consumer runtime, dead letters). They name no domain app.
    "common",
    "kafka_bridge",
    # The domain apps. Each declares its events and consumers (`<app>/events.py`,
    # `<app>/consumers.py`) and registers them from its AppConfig.ready().
    "api_tokens",
    "inventory",
    "orders",
    "notifications",
    # Signed webhooks to external systems: staff register endpoints, a consumer records one
    # delivery per matching order event, `run_webhook_dispatcher` sends them.
    "webhooks",
    # Scores each reserved order before it is charged (run by the orders consumer); keeps the
    # assessments and their staff reviews.
    "risk",
    # The read side: tables built from events alone (orders per minute, sales and customer
    # reports), rebuilt by replaying the topics, and the admin's pipeline dashboard. It
    # imports no other app's models.
    "reporting",
]

# Off only to measure what metrics cost (docs/operations.md): no request metrics, no
# /metrics, no worker metrics server or lag statistics.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)

MIDDLEWARE = [
    # Outermost, so that request latency includes every other middleware.
    *(["common.metrics.RequestMetricsMiddleware"] if METRICS_ENABLED else []),
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "common.correlation.CorrelationIdMiddleware",
    # Inside the correlation scope: binds the request's ids to its log lines, logs it.
    "common.structured_logs.RequestLogMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "ecommerce.urls"
SESSION_ENGINE = "common.sessions"
WSGI_APPLICATION = "ecommerce.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
# SQLite for `make run` on a bare machine; PostgreSQL everywhere else (tests, compose).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several local processes write at once: WAL + IMMEDIATE transactions + a busy timeout
    # turn "database is locked" into a short wait.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # Long-running workers reconnect between messages when a connection has gone stale.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Parameters travel apart from the statement (no quoting in Python), and a statement a
    # connection runs often is prepared once: planned by PostgreSQL once per connection
    # instead of per run. Both cut CPU per order (docs/benchmarks.md). Behind PgBouncer in
    # transaction mode, set DATABASE_PREPARE_THRESHOLD=none.
    _threshold = env.str("DATABASE_PREPARE_THRESHOLD", default="5").strip().lower()
    if _threshold not in ("none", "") and not _threshold.isdigit():
        raise ImproperlyConfigured(
            f"DATABASE_PREPARE_THRESHOLD must be a whole number or 'none', not {_threshold!r}"
        )
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "server_side_binding": env.bool("DATABASE_SERVER_SIDE_BINDING", default=True),
            "prepare_threshold": int(_threshold) if _threshold.isdigit() else None,
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Date formats of our own (ISO order, 24 h) for the admin: ecommerce/formats/.
FORMAT_MODULE_PATH = ["ecommerce.formats"]
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- REST framework ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so that an anonymous request gets 401 with WWW-Authenticate, not 403.
        "api_tokens.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # JSON bodies only (anything else is 415), so that JSON types are checked as the schema
    # says (common.api_fields); the parser answers 400 (not 500) to deep nesting.
    # DRF's stdlib-json renderer and parser are kept on purpose: orjson was measured on
    # POST /api/orders/ and saves ~20 us of ~14 ms CPU per request, no gain over HTTP.
    "DEFAULT_PARSER_CLASSES": ["common.api_errors.JSONParser"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "common.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=20),
    "DEFAULT_SCHEMA_CLASS": "common.api_schema.AutoSchema",
    "EXCEPTION_HANDLER": "common.api_errors.exception_handler",
    # Per customer on the whole API; per address for requests without valid credentials.
    # Order creation has its own, stricter limit on top (orders.apis). Rates: API_THROTTLE_*.
    "DEFAULT_THROTTLE_CLASSES": [
        "common.throttling.CustomerRateThrottle",
        "common.throttling.AnonymousRateThrottle",
    ],
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "E-commerce order pipeline API",
    "DESCRIPTION": "Orders are accepted here and processed asynchronously over Kafka.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ and /api/redoc/ load their JavaScript and CSS from STATIC_URL (the
    # drf-spectacular-sidecar app), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge from Swagger's online validator (it would send the schema URL off-site).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    # Several components have a `status` field with its own choices: each enum is named
    # after what it is, not numbered by drf-spectacular.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.status.OrderStatus",
        "WebhookEndpointStatusEnum": "webhooks.status.EndpointStatus",
    },
}

# --- Rate limits ------------------------------------------------------------------------
# "<requests>/<period>", the period one of s, m(in), h(our), d(ay), optionally with a count:
# "20/10s". Counted in the shared cache (Redis), so every web process sees the same counts.
# API_THROTTLING=false turns every limit off (load tests; the benchmark does it itself).
API_THROTTLING = env.bool("API_THROTTLING", default=True)
API_THROTTLE_RATES = {
    "customer": env.str("API_THROTTLE_CUSTOMER", default="600/min"),
    "order_create": env.str("API_THROTTLE_ORDER_CREATE", default="60/min"),
    "anonymous": env.str("API_THROTTLE_ANONYMOUS", default="30/min"),
}

# --- Admin login lockout (django-axes) ---------------------------------------------------
# After AXES_FAILURE_LIMIT failed logins for one username from one address, that pair is
# locked out for AXES_COOLOFF_SECONDS (each failure while locked out restarts the wait).
# Staff see attempts and lockouts in the admin (Axes: access attempts) and can delete them.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("AXES_COOLOFF_SECONDS", default=15 * 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "common.throttling.client_address"
# No start-up banner in every process; failed logins and lockouts are still logged.
AXES_VERBOSE = False

# --- API tokens ---------------------------------------------------------------------------
# Only a SHA-256 digest of each token is stored; new tokens expire after this many days
# (0: never).
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)

# --- Redis ------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# The shared cache: rate-limit counters. Short timeouts, as for every Redis client here.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
        # Every API request reads its rate-limit counters here: a frozen Redis must cost a
        # request a fraction of a second (then limits are off for a while, see
        # common.throttling), not the 2 s the workers' Redis client waits.
        "OPTIONS": {"socket_timeout": 0.25, "socket_connect_timeout": 0.25},
    }
}

# --- Kafka ------------------------------------------------------------------------------
# Client settings come from here, never from constants in code. Defaults suit local runs
# (see docs/test-broker.md); production overrides them through the environment.
KAFKA = {
    "BOOTSTRAP_SERVERS": env.str("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092"),
    # Prefix for every topic and consumer group name: lets several environments (or test
    # runs) share one cluster without seeing each other's events.
    "NAMESPACE": env.str("KAFKA_NAMESPACE", default=""),
    "DEFAULT_PARTITIONS": env.int("KAFKA_DEFAULT_PARTITIONS", default=6),
    "REPLICATION_FACTOR": env.int("KAFKA_REPLICATION_FACTOR", default=1),
    "SESSION_TIMEOUT_MS": env.int("KAFKA_SESSION_TIMEOUT_MS", default=6000),
    "HEARTBEAT_INTERVAL_MS": env.int("KAFKA_HEARTBEAT_INTERVAL_MS", default=1000),
    "MAX_POLL_INTERVAL_MS": env.int("KAFKA_MAX_POLL_INTERVAL_MS", default=300_000),
    "FETCH_WAIT_MAX_MS": env.int("KAFKA_FETCH_WAIT_MAX_MS", default=50),
    "ASSIGNMENT_STRATEGY": env.str("KAFKA_ASSIGNMENT_STRATEGY", default="cooperative-sticky"),
    "PRODUCER_LINGER_MS": env.int("KAFKA_PRODUCER_LINGER_MS", default=5),
    # A consumer applies up to this many messages as one unit (one transaction, set-based
    # handlers), waiting at most this long for a batch to fill once a first message is in.
    "CONSUMER_BATCH_SIZE": env.int("KAFKA_CONSUMER_BATCH_SIZE", default=500),
    "CONSUMER_BATCH_MAX_WAIT_MS": env.int("KAFKA_CONSUMER_BATCH_MAX_WAIT_MS", default=5),
    # Per consumer name, e.g. "read_models=500,webhooks=100": overrides both the default
    # above and the longer waits some groups declare (kafka_bridge.registry.ConsumerSpec).
    "CONSUMER_BATCH_MAX_WAIT_MS_BY_GROUP": {
        name: int(ms)
        for name, ms in env.dict("KAFKA_CONSUMER_BATCH_MAX_WAIT_MS_BY_GROUP", default={}).items()
    },
    # Offsets are committed at most this often while busy, and always on revoke/shutdown.
    "COMMIT_INTERVAL_SECONDS": env.float("KAFKA_COMMIT_INTERVAL_SECONDS", default=1.0),
    # Security (SASL, TLS, client certificates), mapped to librdkafka and checked for
    # settings that do not fit the protocol by kafka_bridge.client.security_config; empty
    # means PLAINTEXT.
    "SECURITY_PROTOCOL": env.str("KAFKA_SECURITY_PROTOCOL", default=""),
    "SASL_MECHANISM": env.str("KAFKA_SASL_MECHANISM", default=""),
    "SASL_USERNAME": env.str("KAFKA_SASL_USERNAME", default=""),
    "SASL_PASSWORD": env.str("KAFKA_SASL_PASSWORD", default=""),
    "SSL_CA_LOCATION": env.str("KAFKA_SSL_CA_LOCATION", default=""),
    "SSL_CERTIFICATE_LOCATION": env.str("KAFKA_SSL_CERTIFICATE_LOCATION", default=""),
    "SSL_KEY_LOCATION": env.str("KAFKA_SSL_KEY_LOCATION", default=""),
    # The password of an encrypted client key (KAFKA_SSL_KEY_LOCATION).
    "SSL_KEY_PASSWORD": env.str("KAFKA_SSL_KEY_PASSWORD", default=""),
    # "https" (librdkafka's default: the broker's certificate must name the host) or "none".
    "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": env.str(
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", default=""
    ),
    # Handler retries for transient errors before the event goes to the dead-letter topic.
    "HANDLER_MAX_ATTEMPTS": env.int("KAFKA_HANDLER_MAX_ATTEMPTS", default=5),
    "HANDLER_BACKOFF_BASE_SECONDS": env.float("KAFKA_HANDLER_BACKOFF_BASE_SECONDS", default=0.2),
    "HANDLER_BACKOFF_MAX_SECONDS": env.float("KAFKA_HANDLER_BACKOFF_MAX_SECONDS", default=5.0),
    # Our local and test broker (Tansu) reports wrong end offsets (docs/test-broker.md):
    # the local stack and the test harness set this, and lag figures then say so.
    "END_OFFSETS_APPROXIMATE": env.bool("KAFKA_END_OFFSETS_APPROXIMATE", default=False),
    # How often librdkafka reports a consumer's statistics, from which the per-partition lag
    # gauge is read (only while the worker serves metrics).
    "STATISTICS_INTERVAL_MS": env.int("KAFKA_STATISTICS_INTERVAL_MS", default=5000),
    # Names this process among the instances of a transactional consumer (order_rate): its
    # transactional.id is "<group>.<instance id>". Keep it stable across restarts of one
    # instance (a restart then fences its predecessor and aborts its open transaction at
    # once) and unique among running instances. Empty: the hostname (compose: one per
    # container, kept across restarts).
    "INSTANCE_ID": env.str("KAFKA_INSTANCE_ID", default=""),
}

# Confluent Schema Registry: when a URL is set, the relay publishes events in the registry
# wire format (JSON Schema, registered per event type and version; see kafka_bridge/wire.py).
# Empty: plain JSON envelopes. Consumers read both either way. "mock://..." is the client's
# in-memory registry, one per process: for tests only.
SCHEMA_REGISTRY = {
    "URL": env.str("SCHEMA_REGISTRY_URL", default=""),
    # "key:secret" for HTTP basic auth (Confluent Cloud API key); empty for none.
    "BASIC_AUTH_USER_INFO": env.str("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", default=""),
}

OUTBOX = {
    # The relay is woken on commit through Redis pub/sub; this poll is the safety net.
    "POLL_INTERVAL_SECONDS": env.float("OUTBOX_POLL_INTERVAL_SECONDS", default=1.0),
    "BATCH_SIZE": env.int("OUTBOX_BATCH_SIZE", default=500),
    "FLUSH_TIMEOUT_SECONDS": env.float("OUTBOX_FLUSH_TIMEOUT_SECONDS", default=15.0),
}

# How long the tables that grow with every event keep their rows (kafka_bridge.retention;
# 0 = forever). ProcessedEvent rows are the duplicate backstop: keep them at least as long
# as the topics keep messages (Apache Kafka: 7 days by default) plus the time dead letters
# may wait for a replay; dead letters older than that are not replayed.
RETENTION = {
    "OUTBOX_DAYS": env.float("OUTBOX_RETENTION_DAYS", default=7),
    "PROCESSED_EVENT_DAYS": env.float("PROCESSED_EVENT_RETENTION_DAYS", default=30),
    "BATCH_SIZE": env.int("RETENTION_BATCH_SIZE", default=5000),
    "SWEEP_SECONDS": env.float("RETENTION_SWEEP_SECONDS", default=3600),
}

# --- Reporting (the read side: reporting app) ---------------------------------------------
REPORTING = {
    # Orders per minute (metrics.order.rate): an order may arrive this long (in event time:
    # the latest occurred_at seen) after its minute ended and still count in it; the window
    # is published again. Later ones are counted apart, as too late.
    "ORDER_RATE_ALLOWED_LATENESS_SECONDS": env.int(
        "ORDER_RATE_ALLOWED_LATENESS_SECONDS", default=300
    ),
    # rebuild_read_models: how long the swap may wait for the replay to reach what the live
    # consumer has applied (the live consumer pauses meanwhile).
    "REBUILD_SWAP_TIMEOUT_SECONDS": env.float("READ_MODELS_SWAP_TIMEOUT_SECONDS", default=60.0),
}

# Redis keys that short-circuit redelivered events; the database table is the backstop.
IDEMPOTENCY_KEY_TTL_SECONDS = env.int("IDEMPOTENCY_KEY_TTL_SECONDS", default=7 * 24 * 3600)

# --- Observability ----------------------------------------------------------------------
# Worker processes (run_relay, run_consumer) serve Prometheus metrics on this port when it is
# set; the web tier serves them at /metrics (gunicorn workers aggregated: gunicorn.conf.py).
METRICS_PORT = env.int("METRICS_PORT", default=None) if METRICS_ENABLED else None
METRICS_ADDR = env.str("METRICS_ADDR", default="0.0.0.0")
# Workers touch a file here every loop; `manage.py worker_alive <worker>` checks its age.
WORKER_HEARTBEAT_DIR = Path(
    env.str("WORKER_HEARTBEAT_DIR", default=f"{tempfile.gettempdir()}/ecommerce-heartbeats")
)
# /readyz/ gives each dependency (database, Redis, Kafka metadata) this long to answer.
READINESS_TIMEOUT_SECONDS = env.float("READINESS_TIMEOUT_SECONDS", default=2.0)

# --- Orders -----------------------------------------------------------------------------
ORDERS = {
    "CURRENCY": env.str("ORDERS_CURRENCY", default="EUR"),
    "MAX_LINES": env.int("ORDERS_MAX_LINES", default=100),
    "MAX_QUANTITY_PER_LINE": env.int("ORDERS_MAX_QUANTITY_PER_LINE", default=1000),
    # Expiry (Celery beat): orders stuck in these statuses longer than this are expired.
    "PENDING_TIMEOUT_SECONDS": env.int("ORDERS_PENDING_TIMEOUT_SECONDS", default=15 * 60),
    "RESERVED_TIMEOUT_SECONDS": env.int("ORDERS_RESERVED_TIMEOUT_SECONDS", default=30 * 60),
    "EXPIRY_SWEEP_SECONDS": env.float("ORDERS_EXPIRY_SWEEP_SECONDS", default=60.0),
    "DEFAULT_CARRIER": env.str("ORDERS_DEFAULT_CARRIER", default="DHL"),
    # The live status stream (GET /api/orders/{id}/events/, orders/status_stream.py): a
    # comment this often while nothing happens (proxies close idle connections); the
    # database read this often while Redis pub/sub is down, and, while it is up, in case an
    # announcement was lost; how long a client waits before reconnecting (SSE `retry`); the
    # longest a stream stays open (the client then resumes, maybe on another process); the
    # threads (each with one connection) that read the database for a process's streams.
    "LIVE_KEEPALIVE_SECONDS": env.float("ORDERS_LIVE_KEEPALIVE_SECONDS", default=15.0),
    "LIVE_POLL_SECONDS": env.float("ORDERS_LIVE_POLL_SECONDS", default=2.0),
    "LIVE_RESYNC_SECONDS": env.float("ORDERS_LIVE_RESYNC_SECONDS", default=60.0),
    "LIVE_RETRY_MS": env.int("ORDERS_LIVE_RETRY_MS", default=3000),
    "LIVE_MAX_SECONDS": env.float("ORDERS_LIVE_MAX_SECONDS", default=3600.0),
    "LIVE_DB_THREADS": env.int("ORDERS_LIVE_DB_THREADS", default=4),
}

# The payment provider: a dotted path and its keyword options. The fake provider declines
# the token "tok_decline" and amounts above PAYMENTS_FAKE_DECLINE_ABOVE.
# Provider calls run outside any database transaction, at most MAX_CONCURRENCY at once per
# orders consumer process (the fake provider's ledger uses one database connection per
# concurrent call; a real provider's HTTP calls need none).
PAYMENTS = {
    "GATEWAY": env.str("PAYMENTS_GATEWAY", default="orders.payments.FakePaymentGateway"),
    "OPTIONS": {
        "decline_above": env.str("PAYMENTS_FAKE_DECLINE_ABOVE", default="10000"),
        # Every fake provider call takes this long, like a real provider's round trip.
        "latency_ms": env.int("PAYMENTS_FAKE_LATENCY_MS", default=0),
        # While a file exists at this path the fake provider is down for every token (a
        # switch for outage drills and tests, e.g. `touch /tmp/gateway-down`); empty: never.
        "outage_file": env.str("PAYMENTS_FAKE_OUTAGE_FILE", default=""),
    },
    "MAX_CONCURRENCY": env.int("PAYMENTS_MAX_CONCURRENCY", default=64),
    # The circuit breaker around charges (orders/breaker.py), its state shared by every
    # process in Redis: it opens after FAIL_MAX provider failures in a row (unavailable or
    # timed out; declines are answers), fails charges fast for RESET_TIMEOUT_SECONDS, then
    # lets one probe through. The orders it held back wait in `reserved`; the charge sweep
    # retries reserved orders without a payment older than CHARGE_RETRY_AFTER_SECONDS.
    # Keep FAIL_MAX at most KAFKA_HANDLER_MAX_ATTEMPTS: an outage then opens the breaker
    # before any order has used up its attempts (docs/failure-handling.md).
    "BREAKER": {
        "FAIL_MAX": env.int("PAYMENTS_BREAKER_FAIL_MAX", default=5),
        "RESET_TIMEOUT_SECONDS": env.float("PAYMENTS_BREAKER_RESET_TIMEOUT_SECONDS", default=30.0),
        # A probe's lease: if its process dies mid-call, another probe goes after this long.
        "PROBE_TIMEOUT_SECONDS": env.float("PAYMENTS_BREAKER_PROBE_TIMEOUT_SECONDS", default=30.0),
    },
    "CHARGE_RETRY_AFTER_SECONDS": env.float("PAYMENTS_CHARGE_RETRY_AFTER_SECONDS", default=30.0),
    "CHARGE_SWEEP_SECONDS": env.float("PAYMENTS_CHARGE_SWEEP_SECONDS", default=15.0),
    # Orders one sweep charges at most (oldest first); the next sweep takes the rest.
    "CHARGE_SWEEP_BATCH": env.int("PAYMENTS_CHARGE_SWEEP_BATCH", default=500),
}

# --- Webhooks -----------------------------------------------------------------------------
# Order events delivered to the endpoints staff register (webhooks app, docs/webhooks.md).
WEBHOOKS = {
    # Outgoing requests refuse private, loopback, link-local and other non-public addresses
    # unless this is set (local runs and tests only); registration then also takes http://.
    "ALLOW_PRIVATE": env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False),
    # One attempt: connect, send, and the answer's status line, each within what is left.
    "TIMEOUT_SECONDS": env.float("WEBHOOKS_TIMEOUT_SECONDS", default=10.0),
    # Seconds before each retry (±20% jitter); a delivery fails after the last one: 5 s,
    # 5 min, 30 min, 2 h, 5 h, 10 h, 10 h is 8 attempts over about 27.6 hours.
    "RETRY_SCHEDULE_SECONDS": [
        float(seconds)
        for seconds in env.list(
            "WEBHOOKS_RETRY_SCHEDULE_SECONDS",
            default=["5", "300", "1800", "7200", "18000", "36000", "36000"],
        )
    ],
    "RETRY_JITTER": env.float("WEBHOOKS_RETRY_JITTER", default=0.2),
    # Requests in flight at once per dispatcher process, and per endpoint within them.
    "MAX_CONCURRENCY": env.int("WEBHOOKS_MAX_CONCURRENCY", default=32),
    "MAX_IN_FLIGHT_PER_ENDPOINT": env.int("WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT", default=4),
    # How often an idle dispatcher looks for deliveries that became due.
    "POLL_INTERVAL_SECONDS": env.float("WEBHOOKS_POLL_INTERVAL_SECONDS", default=0.5),
    # An endpoint is disabled once every attempt has failed for this long and at least this
    # many attempts in a row (staff re-enable it).
    "DISABLE_AFTER_SECONDS": env.float("WEBHOOKS_DISABLE_AFTER_SECONDS", default=24 * 3600),
    "DISABLE_AFTER_FAILURES": env.int("WEBHOOKS_DISABLE_AFTER_FAILURES", default=5),
}

# --- Risk assessment (risk app, docs/risk.md) -------------------------------------------------
# Every reserved order is scored before it is charged: each rule gives points and a reason.
# Below REVIEW_SCORE it is charged; from REVIEW_SCORE it is held for staff to approve or
# reject; from BLOCK_SCORE it is cancelled at once (its stock released). Windows are in
# seconds, amounts in ORDERS_CURRENCY. RISK_ENABLED=false skips the check (and its event).
RISK = {
    "ENABLED": env.bool("RISK_ENABLED", default=True),
    "REVIEW_SCORE": env.int("RISK_REVIEW_SCORE", default=50),
    "BLOCK_SCORE": env.int("RISK_BLOCK_SCORE", default=100),
    # More than MAX orders by one customer within WINDOW (this one included).
    "CUSTOMER_WINDOW_SECONDS": env.int("RISK_CUSTOMER_WINDOW_SECONDS", default=3600),
    "CUSTOMER_MAX_ORDERS": env.int("RISK_CUSTOMER_MAX_ORDERS", default=5),
    "CUSTOMER_VELOCITY_POINTS": env.int("RISK_CUSTOMER_VELOCITY_POINTS", default=60),
    # More than MAX orders with one payment token within WINDOW, whoever placed them.
    "TOKEN_WINDOW_SECONDS": env.int("RISK_TOKEN_WINDOW_SECONDS", default=3600),
    "TOKEN_MAX_ORDERS": env.int("RISK_TOKEN_MAX_ORDERS", default=5),
    "TOKEN_VELOCITY_POINTS": env.int("RISK_TOKEN_VELOCITY_POINTS", default=60),
    # More than MAX declined charges within WINDOW, of the customer or of the payment token.
    "FAILED_PAYMENTS_WINDOW_SECONDS": env.int("RISK_FAILED_PAYMENTS_WINDOW_SECONDS", default=86400),
    "FAILED_PAYMENTS_MAX": env.int("RISK_FAILED_PAYMENTS_MAX", default=2),
    "FAILED_PAYMENTS_POINTS": env.int("RISK_FAILED_PAYMENTS_POINTS", default=40),
    # A total above FACTOR times the median of the customer's paid orders (at least
    # MIN_HISTORY of them; the latest HISTORY_ORDERS are looked at).
    "AMOUNT_FACTOR": env.float("RISK_AMOUNT_FACTOR", default=5.0),
    "AMOUNT_MIN_HISTORY": env.int("RISK_AMOUNT_MIN_HISTORY", default=3),
    "AMOUNT_POINTS": env.int("RISK_AMOUNT_POINTS", default=50),
    "HISTORY_ORDERS": env.int("RISK_HISTORY_ORDERS", default=50),
    # A shipping country none of the customer's paid orders went to.
    "NEW_COUNTRY_POINTS": env.int("RISK_NEW_COUNTRY_POINTS", default=25),
    # A first order (no paid order before it) of at least this total.
    "FIRST_ORDER_AMOUNT": env.str("RISK_FIRST_ORDER_AMOUNT", default="500"),
    "FIRST_ORDER_POINTS": env.int("RISK_FIRST_ORDER_POINTS", default=50),
}
if not 0 < RISK["REVIEW_SCORE"] <= RISK["BLOCK_SCORE"]:
    raise ImproperlyConfigured("need 0 < RISK_REVIEW_SCORE <= RISK_BLOCK_SCORE")

# --- E-mail -----------------------------------------------------------------------------
# Console in development; SMTP by configuration (EMAIL_URL=smtp://user:pass@host:587).
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="shop@example.com")

# --- Notifications: channels ----------------------------------------------------------
# Each channel's backend is a dotted path, as EMAIL_BACKEND is (notifications/channels/).
# SMS and push default to the recording backend, which stores what it would have sent for
# the admin (Notifications → Recorded messages): local runs and tests send nothing out.
# Production names the real ones: notifications.channels.sms.HttpSmsChannel and
# notifications.channels.webpush.WebPushChannel. Each channel's failed sends are retried
# MAX_RETRIES times, after BACKOFF_SECONDS x 2^attempt (±50%, at most BACKOFF_MAX_SECONDS).
_recording_channel = "notifications.channels.recording.RecordingChannel"
NOTIFICATIONS = {
    "CHANNELS": {
        channel: {
            "BACKEND": env.str(f"NOTIFICATIONS_{channel.upper()}_BACKEND", default=backend),
            "MAX_RETRIES": env.int(f"NOTIFICATIONS_{channel.upper()}_MAX_RETRIES", default=5),
            "BACKOFF_SECONDS": env.float(
                f"NOTIFICATIONS_{channel.upper()}_BACKOFF_SECONDS", default=backoff
            ),
            "BACKOFF_MAX_SECONDS": env.float(
                f"NOTIFICATIONS_{channel.upper()}_BACKOFF_MAX_SECONDS", default=300.0
            ),
        }
        for channel, backend, backoff in (
            ("email", "notifications.channels.email.EmailChannel", 2.0),
            ("sms", _recording_channel, 5.0),
            ("push", _recording_channel, 5.0),
        )
    },
    # The HTTP SMS provider (notifications/channels/sms.py says what it sends): a bearer
    # token, or else basic auth with a username and password.
    "SMS": {
        "PROVIDER_URL": env.str("SMS_PROVIDER_URL", default=""),
        "PROVIDER_TOKEN": env.str("SMS_PROVIDER_TOKEN", default=""),
        "PROVIDER_USERNAME": env.str("SMS_PROVIDER_USERNAME", default=""),
        "PROVIDER_PASSWORD": env.str("SMS_PROVIDER_PASSWORD", default=""),
        "FROM": env.str("SMS_FROM", default="Shop"),
        "TIMEOUT_SECONDS": env.float("SMS_PROVIDER_TIMEOUT_SECONDS", default=5.0),
    },
    # Web Push with VAPID. The private key: raw or DER, base64url, or PEM; the subject: a
    # mailto: or https: URL the push services can reach us at.
    "WEBPUSH": {
        "VAPID_PRIVATE_KEY": env.str("WEBPUSH_VAPID_PRIVATE_KEY", default=""),
        "VAPID_SUBJECT": env.str("WEBPUSH_VAPID_SUBJECT", default=""),
        "TTL_SECONDS": env.int("WEBPUSH_TTL_SECONDS", default=24 * 3600),
        "TIMEOUT_SECONDS": env.float("WEBPUSH_TIMEOUT_SECONDS", default=5.0),
        # Customers may register endpoints on these hosts (and their subdomains) only, over
        # HTTPS: the workers POST to whatever is registered.
        "ENDPOINT_HOSTS": env.list(
            "WEBPUSH_ENDPOINT_HOSTS",
            default=[
                "fcm.googleapis.com",
                "updates.push.services.mozilla.com",
                "push.apple.com",
                "notify.windows.com",
            ],
        ),
        # At most this many subscriptions (browsers) per customer.
        "MAX_SUBSCRIPTIONS": env.int("WEBPUSH_MAX_SUBSCRIPTIONS", default=10),
    },
}

# --- Celery -----------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes the database connections once every this many tasks; tasks
# reuse them instead, within Django's CONN_MAX_AGE (ecommerce/celery.py says how).
CELERY_DB_REUSE_MAX = 1_000_000_000
# Worker lines go through LOGGING's structured formatter, not a format of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Tests give each pipeline its own queue, as they give it its own Kafka namespace.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Short socket timeouts and a bounded publish retry: during a Redis outage `.delay()` fails
# fast (the notification stays pending for the sweep) instead of blocking a consumer.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 2, "socket_connect_timeout": 2}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
CELERY_BEAT_SCHEDULE = {
    "orders-expire-stale": {
        "task": "orders.tasks.orders_expire_stale",
        "schedule": ORDERS["EXPIRY_SWEEP_SECONDS"],
    },
    "event-tables-prune": {
        "task": "kafka_bridge.tasks.event_tables_prune",
        "schedule": RETENTION["SWEEP_SECONDS"],
    },
    "notifications-deliver-pending": {
        "task": "notifications.tasks.notifications_deliver_pending",
        "schedule": env.float("NOTIFICATIONS_SWEEP_SECONDS", default=60.0),
    },
    # Reserved orders still without a payment: the provider was unavailable (the circuit
    # breaker held their charge back) or staff approved them after a risk hold.
    "orders-charge-awaiting": {
        "task": "orders.tasks.orders_charge_awaiting",
        "schedule": PAYMENTS["CHARGE_SWEEP_SECONDS"],
    },
}

# --- Logging ----------------------------------------------------------------------------
# Every process logs through one structlog formatter (common/structured_logs.py): JSON
# lines with the request's, batch's or task's ids in production (LOG_FORMAT=json, set in
# docker-compose), readable console lines by default (make run).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="console")
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(
        f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {LOG_FORMAT!r}"
    )
LOGGING = logging_config(
    log_format=LOG_FORMAT,
    level=LOG_LEVEL,
    loggers={
        # One line per request comes from common.structured_logs' middleware, with ids.
        "django.server": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
        # The stream process (uvicorn): its lines through our formatter too, once Django is
        # set up; no access log (the request middleware writes one line per request).
        **{
            name: {"handlers": ["console"], "level": "INFO", "propagate": False}
            for name in ("uvicorn", "uvicorn.error")
        },
        "uvicorn.access": {"level": "WARNING"},
    },
)

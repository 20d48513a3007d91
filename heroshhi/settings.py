"""Heroshhi settings: one module, configured by environment variables only.

Two shapes run from this file:

* the embedded default (no variables set): DEBUG on, SQLite, the database cache,
  the django-q2 ORM broker, the sandbox WhatsApp provider;
* production (``DJANGO_ENV=production``): PostgreSQL, Redis for the cache and the
  broker, HTTPS-only cookies and HSTS. It refuses to start without a real
  ``SECRET_KEY``, ``FIELD_ENCRYPTION_KEY`` and ``REDIS_URL``.

Every variable is listed in README.md.
"""

import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers as cors_default_headers
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default."""
    return (os.environ.get(name) or default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name}={value} is outside {minimum}..{maximum if maximum is not None else '∞'}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DJANGO_ENV = env_str("DJANGO_ENV", "development").lower()
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r} must be 'development' or 'production'")
PRODUCTION = DJANGO_ENV == "production"

DEBUG = env_bool("DEBUG", default=not PRODUCTION)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if PRODUCTION and (len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure")):
            raise ImproperlyConfigured("SECRET_KEY is too weak for production: use 50+ random characters")
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # A development key kept on disk, so the web server and the django-q2 worker
    # (which signs its task packages with it) agree, and sessions survive restarts.
    key_file = BASE_DIR / ".dev-secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

# Keys used to encrypt secrets at rest (WhatsApp tokens, TOTP secrets): Fernet keys,
# comma-separated, the first one encrypts and all of them decrypt (key rotation).
# Outside production a key is derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEY")
if PRODUCTION and not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must be set in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Public address of the site, used in links sent by email (password reset).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "corsheaders",
    "django_ratelimit",
    "csp",
    "django_filters",
    # Before django_q: its `qcluster` command is heroshhi's (the scheduler every second).
    "heroshhi.apps.HeroshhiConfig",
    "django_q",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "accounts",
    "leads",
    "messaging",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "heroshhi.middleware.ApiErrorMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.SessionTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so its 413 gets every header on the way out (see its docstring).
    "heroshhi.middleware.RequestSizeLimitMiddleware",
]

ROOT_URLCONF = "heroshhi.urls"
WSGI_APPLICATION = "heroshhi.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "heroshhi.context_processors.dashboard",
            ],
        },
    },
]

# Database: SQLite by default, any dj-database-url URL (postgres://…) otherwise.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # The web server and the worker write at the same time: take the write lock
        # when a transaction starts and wait for it instead of failing.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so servers started by the tests in other processes
    # see the test database (cross-process rate limits, live servers).
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(tempfile.gettempdir(), f"heroshhi-test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache. Rate limits need a cache shared by every process with atomic increments:
# Redis in production; the database in the embedded default (see heroshhi/cache.py).
REDIS_URL = env_str("REDIS_URL")
if PRODUCTION and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production (shared rate limits and the task broker)")
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "heroshhi")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 5, "SOCKET_TIMEOUT": 5},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "heroshhi.cache.AtomicDatabaseCache",
            "LOCATION": "heroshhi_cache",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 60 * 60, minimum=60)
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login"

# Sessions: an idle timeout and an absolute one (accounts.middleware).
SESSION_IDLE_TIMEOUT = env_int("SESSION_IDLE_TIMEOUT", 2 * 60 * 60, minimum=60)
SESSION_ABSOLUTE_TIMEOUT = env_int("SESSION_ABSOLUTE_TIMEOUT", 12 * 60 * 60, minimum=60)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed names need `collectstatic`, which deployments run; a loopback
        # DEBUG=0 server (tests, demos) serves the files as they are.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Tests drive non-debug servers without running collectstatic first.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION
WHITENOISE_MANIFEST_STRICT = False

# Request size limits: anything larger answers 413 in the error envelope.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE
MAX_UPLOAD_SIZE = env_int("MAX_UPLOAD_SIZE", 20 * 1024 * 1024, minimum=1024)
# CSV lead imports with more data rows than this run as a background job.
LEAD_IMPORT_SYNC_MAX_ROWS = env_int("LEAD_IMPORT_SYNC_MAX_ROWS", 5000, minimum=1)
CSRF_FAILURE_VIEW = "heroshhi.api.csrf_failure"

# Email: printed to the console unless an SMTP server is configured.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if env_str("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Heroshhi <no-reply@heroshhi.local>")

# Security headers, on every response.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
    }
}
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Health checks from the load balancer come in over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 60 * 60, minimum=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env_bool("BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["upgrade-insecure-requests"] = True

# CORS: only the configured frontends; webhooks (/api/webhooks/…) accept any
# origin (heroshhi.apps connects that rule).
CORS_ALLOWED_ORIGINS = env_list("FRONTEND_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = env_bool("CORS_ALLOW_CREDENTIALS", False)
CORS_ALLOW_HEADERS = (*cors_default_headers, "x-webhook-secret")
# Headers browser clients may read: Retry-After on 429s, X-Total-Count on HeyDoc's bare-array contacts.
CORS_EXPOSE_HEADERS = ["Retry-After", "X-Total-Count"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["heroshhi.ratelimit.StandardRateThrottle"],
    "DEFAULT_PARSER_CLASSES": [
        "heroshhi.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "heroshhi.api.PageLimitPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "heroshhi.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15, minimum=1, maximum=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7, minimum=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}

# Rate limits, "count/period" as django-ratelimit reads them (15m = 15 minutes).
# Authentication is counted per client IP, the standard API per user (per IP when
# anonymous), webhooks per IP.
RATE_LIMITS = {
    "auth": env_str("RATE_LIMIT_AUTH", "5/15m"),
    "standard": env_str("RATE_LIMIT_STANDARD", "100/15m"),
    "webhook": env_str("RATE_LIMIT_WEBHOOK", "500/15m"),
}
RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)
RATELIMIT_CACHE_PREFIX = "rl:"
# Behind a reverse proxy, name the header holding the client address (for example
# HTTP_X_REAL_IP); the proxy must overwrite it.
RATELIMIT_IP_META_KEY = env_str("RATELIMIT_IP_META_KEY") or None

# django-q2: the ORM broker by default, Redis when REDIS_URL is set. `retry` must
# exceed `timeout`, or a slow task is handed to a second worker while still running.
Q_CLUSTER = {
    "name": "heroshhi",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": env_int("Q_TIMEOUT", 120, minimum=1),
    "retry": env_int("Q_RETRY", 180, minimum=2),
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 5, minimum=1),
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "label": "Background tasks",
}
# How often `manage.py qcluster` looks for due schedules (django-q2's own sentinel: every
# 30 s): one-off schedules (a scheduled message's time, a delivery retry) start on time.
# 0 leaves django-q2's 30 s alone.
SCHEDULER_TICK_SECONDS = env_int("Q_SCHEDULER_TICK_SECONDS", 1, minimum=0)
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 1

# WhatsApp Cloud API.
WHATSAPP_GRAPH_URL = env_str("WHATSAPP_GRAPH_URL", "https://graph.facebook.com/v21.0").rstrip("/")
# Seconds the Cloud API client waits to connect, and for an answer. A send that times out
# waiting for its answer is not repeated (Meta may have accepted it): it fails with
# TIMEOUT, which Meta's status webhook corrects if the message did go out.
WHATSAPP_CONNECT_TIMEOUT = env_int("WHATSAPP_CONNECT_TIMEOUT", 5, minimum=1, maximum=60)
WHATSAPP_READ_TIMEOUT = env_int("WHATSAPP_READ_TIMEOUT", 20, minimum=1, maximum=120)
# Sends in flight at once per delivery task (threads of a worker process). A number
# reaches its cap when the processes sending for it keep cap x Meta's answer time in
# flight in all: 80 msg/s at 0.2 s needs 16 (e.g. 2 workers x 8).
WHATSAPP_SEND_CONCURRENCY = env_int("WHATSAPP_SEND_CONCURRENCY", 8, minimum=1, maximum=256)
# Seconds after which an outbound message claimed for sending, but neither sent nor
# released, is presumed abandoned by a dead worker and may be claimed again (and re-queued
# by messaging.tasks.requeue_stale_messages). Must exceed Q_TIMEOUT: a live worker's claim
# must never look abandoned (heroshhi.checks).
MESSAGE_CLAIM_TIMEOUT = env_int("MESSAGE_CLAIM_TIMEOUT", 300, minimum=1)

# Meta's webhook (messaging.webhooks). Inbound texts that opt a lead out / back in, on
# top of STOP and UNSUBSCRIBE / START, which always apply; compared trimmed and
# case-insensitively, comma-separated (e.g. OPT_OUT_WORDS="STOPALL,CANCEL,ARRET").
OPT_OUT_WORDS = env_list("OPT_OUT_WORDS")
OPT_IN_WORDS = env_list("OPT_IN_WORDS")
# Deliveries carrying more items (messages + statuses + echoes + preferences) than this
# are stored and processed by a worker instead of inside the request.
WHATSAPP_WEBHOOK_INLINE_MAX_ITEMS = env_int("WHATSAPP_WEBHOOK_INLINE_MAX_ITEMS", 1000, minimum=0)
# A stored delivery still unprocessed after this many seconds is taken by the sweeper
# (messaging.tasks.process_pending_webhook_events), which retries for this many days.
WHATSAPP_WEBHOOK_SWEEP_AFTER = env_int("WHATSAPP_WEBHOOK_SWEEP_AFTER", 60, minimum=1)
WHATSAPP_WEBHOOK_RETRY_DAYS = env_int("WHATSAPP_WEBHOOK_RETRY_DAYS", 7, minimum=1)

SPECTACULAR_SETTINGS = {
    "TITLE": "Heroshhi API",
    "DESCRIPTION": (
        "The Heroshhi Pro API (JWT) and the HeyDoc WhatsApp API (session cookie), "
        "served side by side. Every error is `{success: false, message, error}` where "
        "`error` is a stable machine code. Every route answers with and without a "
        "trailing slash. Session-authenticated clients send the `csrftoken` cookie's "
        "value in `X-CSRFToken` on unsafe methods."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api",
    "PREPROCESSING_HOOKS": ["heroshhi.openapi.drop_slash_duplicates"],
    # Several models have a "status", "type" or "direction": name their enums apart.
    "ENUM_NAME_OVERRIDES": {
        "LeadStatusEnum": "leads.models.Lead.Status",
        "EngagementTypeEnum": "leads.models.Engagement.Type",
        "MessageStatusEnum": "messaging.models.Message.Status",
        "MessageTypeEnum": "messaging.models.Message.Type",
        "MessageDirectionEnum": "messaging.models.Message.Direction",
        "HeyDocDirectionEnum": ["incoming", "outgoing"],
        "ScheduledMessageStatusEnum": "campaigns.models.ScheduledMessage.Status",
        "ScheduledMessageRecurrenceEnum": "campaigns.models.ScheduledMessage.Recurrence",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "heroshhi.openapi.add_session_routes",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Bad input is answered in the envelope; these would repeat it as warnings.
        "django.request": {"level": "ERROR"},
        "django.security.DisallowedHost": {"level": "ERROR"},
    },
}

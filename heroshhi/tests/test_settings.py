"""heroshhi/settings.py: production passes `check --deploy` and refuses to start
without its secrets; development stays on plain HTTP; the env helpers fail loudly;
the task-queue system check.

Settings are read once per process, so each configuration runs in a subprocess with
an environment built from scratch (nothing inherited from the test run)."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from heroshhi.checks import check_task_queue

ROOT = Path(__file__).resolve().parents[2]
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")


def base_env(**overrides: str | None) -> dict[str, str]:
    env = {name: os.environ[name] for name in _KEEP if name in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for name, value in overrides.items():
        if value is not None:
            env[name] = value
    return env


def production_env(**overrides: str | None) -> dict[str, str]:
    values = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48)[:64],
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ALLOWED_HOSTS": "crm.example.com",
        "DATABASE_URL": "sqlite:////tmp/x.sqlite3",
    }
    values.update(overrides)
    return base_env(**values)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def manage_check(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return run(["manage.py", "check", *extra], env)


_PRINT = """
import django, json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
from django.conf import settings
print(json.dumps({name: getattr(settings, name, None) for name in %r}))
"""


def read_settings(env: dict[str, str], *names: str) -> dict:
    result = run(["-c", _PRINT % (list(names),)], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_generated_secret_key_is_64_characters():
    assert len(production_env()["SECRET_KEY"]) == 64


# --- production -----------------------------------------------------------------------------


def test_check_deploy_is_clean_with_production_settings():
    result = manage_check(production_env(), "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr


def test_check_deploy_fails_when_a_protection_is_switched_off():
    # The command above can fail: SECURE_SSL_REDIRECT=0 is flagged by security.W008.
    result = manage_check(production_env(SECURE_SSL_REDIRECT="0"), "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W008" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY must be set when DEBUG is off"),
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
        ({"SECRET_KEY": "too-short-for-production"}, "SECRET_KEY is too weak for production"),
        ({"SECRET_KEY": "a" * 64}, "SECRET_KEY is too weak for production"),
        ({"SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(48)}, "SECRET_KEY is too weak for production"),
        ({"FIELD_ENCRYPTION_KEY": None}, "FIELD_ENCRYPTION_KEY must be set in production"),
        ({"REDIS_URL": None}, "REDIS_URL must be set in production"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS must be set in production"),
    ],
    ids=[
        "no-secret",
        "empty-secret",
        "short-secret",
        "one-letter-secret",
        "insecure-prefix",
        "no-fernet",
        "no-redis",
        "no-hosts",
    ],
)
def test_production_refuses_to_start_without_its_secrets(overrides, message):
    result = manage_check(production_env(**overrides), "--deploy")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
    # The refusal must not print the secret it refused.
    secret = overrides.get("SECRET_KEY")
    if secret and len(secret) > 20:
        assert secret not in result.stderr + result.stdout


def test_a_malformed_encryption_key_fails_the_check():
    result = manage_check(production_env(FIELD_ENCRYPTION_KEY="not-a-fernet-key"))
    assert result.returncode != 0
    assert "heroshhi.E003" in result.stdout + result.stderr


def test_production_is_https_only():
    values = read_settings(
        production_env(),
        "DEBUG",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SESSION_COOKIE_HTTPONLY",
        "SECURE_CONTENT_TYPE_NOSNIFF",
        "X_FRAME_OPTIONS",
        "SILENCED_SYSTEM_CHECKS",
    )
    assert values["DEBUG"] is False
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["SILENCED_SYSTEM_CHECKS"] == []


def test_production_hsts_cannot_be_shortened():
    result = manage_check(production_env(SECURE_HSTS_SECONDS="3600"))
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS" in result.stderr


def test_production_uses_redis_for_cache_and_broker():
    values = read_settings(production_env(), "CACHES", "Q_CLUSTER")
    assert values["CACHES"]["default"]["BACKEND"] == "django_redis.cache.RedisCache"
    assert values["CACHES"]["default"]["LOCATION"] == "redis://127.0.0.1:6379/0"
    assert values["Q_CLUSTER"]["redis"] == "redis://127.0.0.1:6379/0"
    assert "orm" not in values["Q_CLUSTER"]


_REQUEST = """
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
import django
django.setup()
from django.test import Client
for path in ("/healthz", "/login"):
    r = Client(HTTP_HOST="crm.example.com").get(path)
    print(path, r.status_code, r.get("Location", ""), r.get("Strict-Transport-Security", ""))
"""


def _serve(env) -> dict[str, list[str]]:
    result = run(["-c", _REQUEST], env)
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ") for line in result.stdout.strip().splitlines()[-2:]]
    return {parts[0]: parts[1:] for parts in lines}


def test_production_redirects_plain_http_but_not_the_health_check():
    answers = _serve(production_env())
    assert answers["/healthz"][0] == "200"
    status, location, *_ = answers["/login"]
    assert status == "301"
    assert location == "https://crm.example.com/login"


# --- development with DEBUG off ----------------------------------------------------------------


def test_debug_off_without_secret_key_refuses_to_start():
    result = manage_check(base_env(DEBUG="0"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_debug_off_in_development_serves_plain_http(tmp_path):
    env = base_env(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS="crm.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}",
    )
    values = read_settings(env, "DEBUG", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "SECURE_HSTS_SECONDS")
    assert values["DEBUG"] is False
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0

    answers = _serve(env)
    assert answers["/healthz"][0] == "200"
    assert answers["/login"][0] == "200"


def test_development_default_starts_with_debug_on():
    values = read_settings(base_env(), "DEBUG", "SECURE_SSL_REDIRECT", "CACHES", "SILENCED_SYSTEM_CHECKS")
    assert values["DEBUG"] is True
    assert values["SECURE_SSL_REDIRECT"] is False
    # Never the per-process LocMem cache: rate limits must be shared.
    assert "locmem" not in values["CACHES"]["default"]["BACKEND"].lower()
    assert values["SILENCED_SYSTEM_CHECKS"] == []


def test_an_unknown_django_env_refuses_to_start():
    result = manage_check(base_env(DJANGO_ENV="staging"))
    assert result.returncode != 0
    assert "DJANGO_ENV" in result.stderr


def test_a_bad_boolean_in_the_environment_refuses_to_start():
    result = manage_check(base_env(DEBUG="maybe"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_plain_check_passes_in_development_and_silences_nothing():
    result = manage_check(base_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "(0 silenced)" in output
    # The embedded default's database cache is reported, not hidden: it is why
    # production requires Redis.
    assert set(re.findall(r"\((\w+\.[A-Z]\d+)\)", output)) <= {"django_ratelimit.W001"}


# --- environment helpers ----------------------------------------------------------------------


def test_env_bool(monkeypatch):
    from heroshhi.settings import env_bool

    monkeypatch.delenv("X", raising=False)
    assert env_bool("X", True) is True
    assert env_bool("X", False) is False
    for raw in ("1", "true", "YES", " on "):
        monkeypatch.setenv("X", raw)
        assert env_bool("X", False) is True
    for raw in ("0", "false", "No", "off", ""):
        monkeypatch.setenv("X", raw)
        assert env_bool("X", True) is False
    for raw in ("maybe", "2", "enabled", "tru"):
        monkeypatch.setenv("X", raw)
        with pytest.raises(ImproperlyConfigured, match="X="):
            env_bool("X", False)


def test_env_int(monkeypatch):
    from heroshhi.settings import env_int

    monkeypatch.delenv("N", raising=False)
    assert env_int("N", 7) == 7
    monkeypatch.setenv("N", "")
    assert env_int("N", 7) == 7
    monkeypatch.setenv("N", "42")
    assert env_int("N", 7) == 42
    for raw in ("abc", "4.2", "1e3"):
        monkeypatch.setenv("N", raw)
        with pytest.raises(ImproperlyConfigured, match="not an integer"):
            env_int("N", 7)
    monkeypatch.setenv("N", "-1")
    with pytest.raises(ImproperlyConfigured, match="outside"):
        env_int("N", 7)
    monkeypatch.setenv("N", "16")
    with pytest.raises(ImproperlyConfigured, match="outside"):
        env_int("N", 7, minimum=1, maximum=15)


def test_env_list_and_str(monkeypatch):
    from heroshhi.settings import env_list, env_str

    monkeypatch.setenv("L", " https://a.example , ,https://b.example,")
    assert env_list("L") == ["https://a.example", "https://b.example"]
    monkeypatch.delenv("L")
    assert env_list("L") == []
    assert env_list("L", "x,y") == ["x", "y"]
    monkeypatch.setenv("S", "  padded  ")
    assert env_str("S") == "padded"


# --- the task-queue check ---------------------------------------------------------------------


def test_default_queue_settings_pass_the_check(settings):
    assert settings.Q_CLUSTER["retry"] > settings.Q_CLUSTER["timeout"]
    assert check_task_queue(None) == []


@pytest.mark.parametrize(("retry", "timeout"), [(120, 120), (60, 120)])
def test_retry_not_above_timeout_is_an_error(settings, retry, timeout):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": retry, "timeout": timeout}
    errors = check_task_queue(None)
    assert [e.id for e in errors] == ["heroshhi.E001"]
    assert errors[0].level == checks.ERROR


def test_the_queue_check_is_registered(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 10, "timeout": 120}
    assert "heroshhi.E001" in {e.id for e in checks.run_checks()}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 121, "timeout": 120}
    assert "heroshhi.E001" not in {e.id for e in checks.run_checks()}


def test_manage_check_fails_when_retry_is_not_above_timeout():
    result = manage_check(base_env(Q_RETRY="60", Q_TIMEOUT="120"))
    assert result.returncode != 0
    assert "heroshhi.E001" in result.stderr


def test_nothing_is_silenced(settings):
    assert settings.SILENCED_SYSTEM_CHECKS == []


def test_the_configured_queue_redelivers_only_after_a_task_timed_out_and_gives_up_eventually(settings):
    """django-q2 hands a task out again after `retry` seconds: shorter than `timeout`, a
    task still running would run twice at once. `max_attempts` 0 would retry forever."""
    cluster = settings.Q_CLUSTER
    assert cluster["retry"] > cluster["timeout"]
    assert cluster["max_attempts"] > 0
    assert cluster["timeout"] < settings.MESSAGE_CLAIM_TIMEOUT

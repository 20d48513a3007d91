"""The lead-ingestion webhook of the Heroshhi document: POST /api/webhooks/leads with
{name, phone, email, source, inquiry, userId}, no login, any origin, the webhook rate
limit, an optional per-account secret, and never a duplicate lead."""

import json
import threading
import uuid

import pytest
from django.db import connection
from django.test import Client

from accounts.tests.factories import AccountFactory
from leads import services
from leads.models import Engagement, Lead

pytestmark = pytest.mark.django_db

URL = "/api/webhooks/leads"


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    """Rate limiting itself is tested in its own test below."""
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "standard": "100000/15m",
        "auth": "1000/15m",
        "webhook": "100000/15m",
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are created in most tests; real password hashing is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def web() -> Client:
    """An outside system: no session, no token, and CSRF checks on as in a browser."""
    return Client(enforce_csrf_checks=True)


def doc_body(account, **overrides) -> dict:
    """The document's example body, for this account."""
    body = {
        "name": "John Doe",
        "phone": "919876543210",
        "email": "john.doe@example.com",
        "source": "Website Form",
        "inquiry": "Product inquiry",
        "userId": str(account.pk),
    }
    body.update(overrides)
    return body


def post(client: Client, payload, **extra):
    return client.post(URL, json.dumps(payload), content_type="application/json", **extra)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- Creating and updating ---------------------------------------------------------------


def test_the_documents_body_creates_the_lead(web, account):
    r = post(web, doc_body(account))

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["success"] is True
    assert isinstance(body["message"], str) and body["message"]
    assert body["data"]["created"] is True
    lead = Lead.objects.get(pk=body["data"]["leadId"])
    assert lead.account == account
    assert lead.phone == "+919876543210"
    assert lead.name == "John Doe"
    assert lead.email == "john.doe@example.com"
    assert lead.source == "Website Form"
    assert lead.inquiry == "Product inquiry"
    assert lead.status == Lead.Status.PENDING
    assert lead.assigned_to is None
    assert lead.is_opted_out is False
    assert not lead.engagements.exists()


def test_the_answer_does_not_echo_the_lead(web, account):
    r = post(web, doc_body(account))

    assert r.status_code == 201
    assert set(r.json()) == {"success", "message", "data"}
    assert set(r.json()["data"]) == {"leadId", "created"}


@pytest.mark.parametrize("path", [URL, URL + "/"])
def test_with_and_without_a_trailing_slash(web, account, path):
    r = web.post(path, json.dumps(doc_body(account)), content_type="application/json")

    assert r.status_code == 201, r.content
    assert Lead.objects.filter(account=account, phone="+919876543210").count() == 1


def test_a_known_phone_updates_the_lead_and_logs_a_note(web, account):
    first = post(web, doc_body(account))
    assert first.status_code == 201
    lead_id = first.json()["data"]["leadId"]

    r = post(
        web,
        doc_body(account, phone="+91 98765 43210", name="John D. Doe", email="", source="Facebook Ad", inquiry=""),
    )

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["data"] == {"leadId": lead_id, "created": False}
    assert Lead.objects.filter(account=account).count() == 1
    lead = Lead.objects.get(pk=lead_id)
    assert lead.phone == "+919876543210"
    assert lead.name == "John D. Doe"  # non-empty fields are updated
    assert lead.source == "Facebook Ad"
    assert lead.email == "john.doe@example.com"  # empty ones keep what was there
    assert lead.inquiry == "Product inquiry"
    engagements = list(lead.engagements.all())
    assert len(engagements) == 1
    assert engagements[0].type == Engagement.Type.NOTE
    assert engagements[0].user is None


def test_a_known_phone_without_optional_fields_keeps_them(web, account):
    post(web, doc_body(account))
    r = post(web, {"name": "John Doe", "phone": "09876543210", "userId": str(account.pk)})

    assert r.status_code == 200, r.content
    assert r.json()["data"]["created"] is False
    lead = Lead.objects.get(account=account)
    assert (lead.email, lead.source, lead.inquiry) == ("john.doe@example.com", "Website Form", "Product inquiry")
    assert lead.engagements.filter(type=Engagement.Type.NOTE).count() == 1


def test_each_resubmission_logs_one_more_engagement(web, account):
    for _ in range(3):
        post(web, doc_body(account))

    lead = Lead.objects.get(account=account)
    assert lead.engagements.count() == 2


def test_a_resubmission_keeps_what_the_team_set(web, account, owner):
    post(web, doc_body(account))
    lead = Lead.objects.get(account=account)
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.QUALIFIED, segment=Lead.Segment.HOT, assigned_to=owner)

    r = post(web, doc_body(account, source="Landing page"))

    assert r.status_code == 200
    lead.refresh_from_db()
    assert (lead.status, lead.segment, lead.assigned_to) == (Lead.Status.QUALIFIED, Lead.Segment.HOT, owner)
    assert lead.source == "Landing page"


def test_the_same_phone_in_two_accounts_is_two_leads(web, account, other_account):
    a = post(web, doc_body(account))
    b = post(web, doc_body(other_account, name="Someone Else"))

    assert a.status_code == 201 and b.status_code == 201
    assert a.json()["data"]["leadId"] != b.json()["data"]["leadId"]
    assert Lead.objects.get(account=account).name == "John Doe"
    assert Lead.objects.get(account=other_account).name == "Someone Else"
    assert Lead.objects.filter(phone="+919876543210").count() == 2


def test_a_form_encoded_body_works_too(web, account):
    r = web.post(URL, doc_body(account))  # application/x-www-form-urlencoded, as plain HTML forms send

    assert r.status_code == 201, r.content
    assert Lead.objects.get(account=account).phone == "+919876543210"


def test_a_phone_sent_as_a_json_number_is_read(web, account):
    r = post(web, doc_body(account, phone=919876543210))

    assert r.status_code == 201, r.content
    assert Lead.objects.get(account=account).phone == "+919876543210"


def test_optional_fields_sent_as_null_count_as_empty(web, account):
    # Form builders send null for a field the visitor left empty.
    r = post(web, doc_body(account, email=None, source=None, inquiry=None))

    assert r.status_code == 201, r.content
    lead = Lead.objects.get(account=account)
    assert (lead.email, lead.source, lead.inquiry) == ("", "", "")


def test_null_fields_on_a_known_phone_keep_what_was_there(web, account):
    post(web, doc_body(account))

    r = post(web, doc_body(account, email=None, source=None, inquiry=None))

    assert r.status_code == 200, r.content
    lead = Lead.objects.get(account=account)
    assert (lead.email, lead.source, lead.inquiry) == ("john.doe@example.com", "Website Form", "Product inquiry")


def test_a_national_number_uses_the_accounts_country(web):
    account = AccountFactory(default_country="US")
    r = post(web, doc_body(account, phone="(415) 555-2671"))

    assert r.status_code == 201, r.content
    assert Lead.objects.get(account=account).phone == "+14155552671"


# --- Validation --------------------------------------------------------------------------


def test_an_unknown_user_id_is_not_found(web, account):
    r = post(web, doc_body(account, userId=str(uuid.uuid4())))

    assert_error(r, 404, "NOT_FOUND")
    assert not Lead.objects.exists()


@pytest.mark.parametrize("user_id", ["your_account_id", "12345", "", None])
def test_a_malformed_user_id_is_a_validation_error(web, account, user_id):
    r = post(web, doc_body(account, userId=user_id))

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert "userId" in body["errors"]
    assert not Lead.objects.exists()


def test_a_missing_user_id_is_a_validation_error(web, account):
    payload = doc_body(account)
    del payload["userId"]

    body = assert_error(post(web, payload), 400, "VALIDATION_ERROR")
    assert "userId" in body["errors"]
    assert not Lead.objects.exists()


@pytest.mark.parametrize("field", ["name", "phone"])
def test_a_missing_required_field_is_a_validation_error(web, account, field):
    payload = doc_body(account)
    del payload[field]

    body = assert_error(post(web, payload), 400, "VALIDATION_ERROR")
    assert field in body["errors"]
    assert not Lead.objects.exists()


@pytest.mark.parametrize("field", ["name", "phone"])
def test_a_blank_required_field_is_a_validation_error(web, account, field):
    body = assert_error(post(web, doc_body(account, **{field: "  "})), 400, "VALIDATION_ERROR")
    assert field in body["errors"]
    assert not Lead.objects.exists()


@pytest.mark.parametrize("phone", ["12345", "not a phone", "+1 555", "9" * 30])
def test_a_bad_phone_is_a_validation_error(web, account, phone):
    body = assert_error(post(web, doc_body(account, phone=phone)), 400, "VALIDATION_ERROR")
    assert "phone" in body["errors"]
    assert not Lead.objects.exists()


def test_a_bad_email_is_a_validation_error(web, account):
    body = assert_error(post(web, doc_body(account, email="not-an-email")), 400, "VALIDATION_ERROR")
    assert "email" in body["errors"]
    assert not Lead.objects.exists()


@pytest.mark.parametrize("name", [{"first": "John"}, ["John"], True])
def test_a_wrong_type_is_a_validation_error(web, account, name):
    assert_error(post(web, doc_body(account, name=name)), 400, "VALIDATION_ERROR")
    assert not Lead.objects.exists()


def test_malformed_json_is_refused_in_the_envelope(web, account):
    r = web.post(URL, '{"name": "John", ', content_type="application/json")

    assert_error(r, 400, "INVALID_JSON")
    assert not Lead.objects.exists()


def test_a_body_that_is_not_an_object_is_refused(web, account):
    assert_error(post(web, [doc_body(account)]), 400, "VALIDATION_ERROR")
    assert not Lead.objects.exists()


def test_html_is_stripped_from_the_stored_text(web, account):
    r = post(
        web,
        doc_body(
            account,
            name="<script>alert('x')</script>Jane <b>Doe</b>",
            source='<a href="http://evil.test">Ads</a>',
            inquiry="<img src=x onerror=alert(1)>Need <i>pricing</i>; DROP TABLE leads;--",
        ),
    )

    assert r.status_code == 201, r.content
    lead = Lead.objects.get(account=account)
    assert lead.name == "Jane Doe"
    assert lead.source == "Ads"
    assert lead.inquiry == "Need pricing; DROP TABLE leads;--"
    for value in (lead.name, lead.source, lead.inquiry):
        assert "<" not in value and ">" not in value


def test_html_is_stripped_on_update_too(web, account):
    post(web, doc_body(account))
    r = post(web, doc_body(account, source="<script>steal()</script>Referral"))

    assert r.status_code == 200
    lead = Lead.objects.get(account=account)
    assert lead.source == "Referral"
    assert "<script>" not in lead.engagements.get().notes


def test_a_name_that_is_only_html_is_refused(web, account):
    body = assert_error(post(web, doc_body(account, name="<b></b><script>x()</script>")), 400, "VALIDATION_ERROR")
    assert "name" in body["errors"]
    assert not Lead.objects.exists()


def test_an_oversized_field_is_refused(web, account):
    assert_error(post(web, doc_body(account, inquiry="x" * 6000)), 400, "VALIDATION_ERROR")
    assert not Lead.objects.exists()


def test_a_10_mb_body_is_refused_as_too_large(web, account):
    r = post(web, doc_body(account, inquiry="x" * (10 * 1024 * 1024)))

    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert not Lead.objects.exists()


def test_a_long_name_is_refused(web, account):
    body = assert_error(post(web, doc_body(account, name="n" * 201)), 400, "VALIDATION_ERROR")
    assert "name" in body["errors"]
    assert not Lead.objects.exists()


# --- No login, no CSRF -------------------------------------------------------------------


def test_no_session_token_or_csrf_token_is_needed(account):
    client = Client(enforce_csrf_checks=True)
    assert "csrftoken" not in client.cookies

    r = post(client, doc_body(account))

    assert r.status_code == 201, r.content


def test_a_browser_with_a_session_cookie_is_not_asked_for_a_csrf_token(owner, password, account):
    browser = Client(enforce_csrf_checks=True)
    login = browser.post(
        "/login", json.dumps({"email": owner.email, "password": password}), content_type="application/json"
    )
    assert login.status_code == 200, login.content

    r = post(browser, doc_body(account))  # no X-CSRFToken header

    assert r.status_code == 201, r.content


def test_an_invalid_bearer_token_is_ignored(web, account):
    r = post(web, doc_body(account), HTTP_AUTHORIZATION="Bearer not-a-token")

    assert r.status_code == 201, r.content


# --- Webhook secret ----------------------------------------------------------------------


@pytest.fixture
def secret_account(account):
    account.webhook_secret = "whsec-3f9a1c0b7e"
    account.save(update_fields=["webhook_secret"])
    return account


def test_a_missing_secret_is_refused_and_nothing_is_written(web, secret_account):
    assert_error(post(web, doc_body(secret_account)), 401, "WEBHOOK_SECRET_INVALID")
    assert not Lead.objects.exists()


@pytest.mark.parametrize("wrong", ["whsec-wrong", "WHSEC-3F9A1C0B7E", "whsec-3f9a1c0b7", ""])
def test_a_wrong_secret_is_refused_and_nothing_is_written(web, secret_account, wrong):
    r = post(web, doc_body(secret_account), HTTP_X_WEBHOOK_SECRET=wrong)

    assert_error(r, 401, "WEBHOOK_SECRET_INVALID")
    assert not Lead.objects.exists()


def test_the_right_secret_is_accepted(web, secret_account):
    r = post(web, doc_body(secret_account), HTTP_X_WEBHOOK_SECRET="whsec-3f9a1c0b7e")

    assert r.status_code == 201, r.content
    assert Lead.objects.filter(account=secret_account).count() == 1


def test_a_wrong_secret_does_not_update_a_known_lead(web, secret_account):
    post(web, doc_body(secret_account), HTTP_X_WEBHOOK_SECRET="whsec-3f9a1c0b7e")

    r = post(web, doc_body(secret_account, name="Mallory"), HTTP_X_WEBHOOK_SECRET="guess")

    assert_error(r, 401, "WEBHOOK_SECRET_INVALID")
    lead = Lead.objects.get(account=secret_account)
    assert lead.name == "John Doe"
    assert not lead.engagements.exists()


def test_the_secret_of_one_account_does_not_open_another(web, secret_account):
    other = AccountFactory(webhook_secret="whsec-other-account")

    r = post(web, doc_body(other), HTTP_X_WEBHOOK_SECRET="whsec-3f9a1c0b7e")

    assert_error(r, 401, "WEBHOOK_SECRET_INVALID")
    assert not Lead.objects.exists()


def test_an_account_without_a_secret_ignores_the_header(web, account):
    r = post(web, doc_body(account), HTTP_X_WEBHOOK_SECRET="anything")

    assert r.status_code == 201, r.content


# --- CORS --------------------------------------------------------------------------------


ORIGIN = "https://forms.some-builder.example"


def test_a_preflight_from_any_origin_is_allowed(web):
    r = web.options(
        URL,
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )

    assert r.status_code == 200
    assert r["Access-Control-Allow-Origin"] in (ORIGIN, "*")
    assert "POST" in r["Access-Control-Allow-Methods"]
    assert "content-type" in r["Access-Control-Allow-Headers"].lower()


def test_a_post_from_any_origin_is_allowed(web, account):
    r = post(web, doc_body(account), HTTP_ORIGIN=ORIGIN)

    assert r.status_code == 201, r.content
    assert r["Access-Control-Allow-Origin"] in (ORIGIN, "*")


def test_an_error_answer_carries_the_cors_header_too(web, account):
    r = post(web, doc_body(account, phone="123"), HTTP_ORIGIN=ORIGIN)

    assert r.status_code == 400
    assert r["Access-Control-Allow-Origin"] in (ORIGIN, "*")


def test_the_rest_of_the_api_is_not_opened_to_that_origin(web, account):
    # The control: the same origin is not allowed on a logged-in route.
    r = web.options(
        "/api/leads",
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )

    assert "Access-Control-Allow-Origin" not in r


# --- Rate limit --------------------------------------------------------------------------


def test_the_webhook_rate_limit(web, account, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "3/15m"}

    answers = [post(web, doc_body(account)).status_code for _ in range(3)]
    assert answers == [201, 200, 200]

    r = post(web, doc_body(account, name="Fourth Try"))

    assert_error(r, 429, "RATE_LIMITED")
    assert int(r["Retry-After"]) >= 1
    lead = Lead.objects.get(account=account)
    assert lead.name == "John Doe"
    assert lead.engagements.count() == 2  # the fourth was not processed

    # The limit is per client address: another sender is not affected.
    other = Client(REMOTE_ADDR="203.0.113.9")
    assert post(other, doc_body(account, phone="919812345678")).status_code == 201


def test_a_logged_in_users_standard_budget_does_not_apply(web, account, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "1/15m", "webhook": "100/15m"}

    answers = [post(web, doc_body(account, phone=f"91981234567{i}")).status_code for i in range(3)]

    assert answers == [201, 201, 201]


# --- Concurrency -------------------------------------------------------------------------


def _run_at_once(count: int, work) -> list:
    """Runs ``work(i)`` in ``count`` threads released together; answers the results
    (or raises the first exception)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i):
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    return results


@pytest.mark.django_db(transaction=True)
def test_simultaneous_submissions_of_a_new_phone_make_one_lead():
    account = AccountFactory()
    for round_ in range(3):
        phone = f"91987654321{round_}"
        results = _run_at_once(
            4,
            lambda i, phone=phone: services.lead_ingest(
                account=account, phone=phone, data={"name": f"Caller {i}", "source": "Website Form"}
            ),
        )

        created = [created for _lead, created in results]
        assert created.count(True) == 1, created
        assert len({lead.pk for lead, _created in results}) == 1
        lead = Lead.objects.get(account=account, phone=f"+{phone}")
        assert lead.engagements.count() == 3
    assert Lead.objects.filter(account=account).count() == 3


@pytest.mark.django_db(transaction=True)
def test_simultaneous_webhook_calls_of_a_new_phone_make_one_lead(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "100000/15m"}
    account = AccountFactory()

    def call(i):
        r = post(Client(), doc_body(account, name=f"Caller {i}", phone="+91 98765 43210"))
        return r.status_code, r.json()

    results = _run_at_once(4, call)

    statuses = sorted(status for status, _body in results)
    assert statuses == [200, 200, 200, 201], results
    assert [body["data"]["created"] for _status, body in results].count(True) == 1
    assert len({body["data"]["leadId"] for _status, body in results}) == 1
    assert Lead.objects.filter(account=account).count() == 1
    assert Lead.objects.get(account=account).engagements.count() == 3

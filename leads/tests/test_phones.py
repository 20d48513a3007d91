"""Phone numbers: read with the account's default region, stored in E.164, shown as
the Heroshhi document shows them (digits with the country code)."""

import pytest

from leads.models import Lead
from leads.phones import InvalidPhone, display_phone, phone_or_error, to_e164


@pytest.fixture(autouse=True)
def _generous_rate_limits_and_fast_hashing(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m", "auth": "1000/15m"}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("9876543210", "+919876543210"),  # national
        ("09876543210", "+919876543210"),  # national with the trunk 0
        ("919876543210", "+919876543210"),  # the document's form: country code, no +
        ("+919876543210", "+919876543210"),
        ("+91 98765 43210", "+919876543210"),
        ("+91-98765-43210", "+919876543210"),
        ("(+91) 98765 43210", "+919876543210"),
        ("0091 98765 43210", "+919876543210"),  # international 00 prefix
        ("00919876543210", "+919876543210"),
        ("  9876543210  ", "+919876543210"),
        ("+1 415 555 2671", "+14155552671"),  # another country, with +
        ("+1 (415) 555-2671", "+14155552671"),
        ("001 415 555 2671", "+14155552671"),
        ("14155552671", "+14155552671"),  # another country without +
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_to_e164_reads_indian_and_international_numbers(raw, e164):
    assert to_e164(raw, "IN") == e164


@pytest.mark.parametrize(
    "raw",
    [
        "garbage",
        "nine eight seven six five",
        "call me",
        "12345",  # too short
        "98765",
        "+91 98765",
        "+1 415",
        "0000000000",
        "+0 123 456 7890",
        "",
        "   ",
        "+",
        "00",
        "9" * 41,  # longer than any phone
        "+91" + "9" * 38,
    ],
)
def test_to_e164_refuses_what_is_not_a_phone(raw):
    with pytest.raises(InvalidPhone):
        to_e164(raw, "IN")


@pytest.mark.parametrize("raw", ["98765abcde", "98765 ABCDE"])
def test_to_e164_refuses_letters(raw):
    """Letters are not read as a keypad's digits ("abc" → 222): a WhatsApp number has none."""
    with pytest.raises(InvalidPhone):
        to_e164(raw, "IN")


def test_forty_characters_is_the_longest_phone_read():
    forty = "+91" + "-" * 27 + "9876543210"
    forty_one = "+91" + "-" * 28 + "9876543210"
    assert (len(forty), len(forty_one)) == (40, 41)

    assert to_e164(forty, "IN") == "+919876543210"
    with pytest.raises(InvalidPhone, match="too long"):
        to_e164(forty_one, "IN")
    with pytest.raises(InvalidPhone, match="too long"):
        to_e164("x" * 41, "IN")


def test_the_default_region_decides_national_numbers():
    assert to_e164("4155552671", "US") == "+14155552671"
    assert to_e164("(415) 555-2671", "US") == "+14155552671"
    assert to_e164("+91 98765 43210", "US") == "+919876543210"
    assert to_e164("02079460958", "GB") == "+442079460958"
    # The same ten digits are an Indian number in an Indian account.
    assert to_e164("4155552671", "IN") == "+914155552671"


def test_phone_or_error_is_a_validation_error_on_the_field():
    from heroshhi.errors import ValidationFailed

    assert phone_or_error("9876543210", "IN") == "+919876543210"
    with pytest.raises(ValidationFailed) as caught:
        phone_or_error("garbage", "IN", field="phone_number")
    assert caught.value.code == "VALIDATION_ERROR"
    assert list(caught.value.errors) == ["phone_number"]


@pytest.mark.parametrize(
    ("e164", "shown"), [("+919876543210", "919876543210"), ("+14155552671", "14155552671"), ("+4420", "4420")]
)
def test_display_phone_is_digits_with_the_country_code(e164, shown):
    assert display_phone(e164) == shown


def test_an_account_in_the_us_reads_national_numbers_as_american(account, owner_client):
    account.default_country = "US"
    account.save()

    created = owner_client.post("/api/leads", {"name": "Sam", "phone": "4155552671"}, format="json")
    indian = owner_client.post("/api/leads", {"name": "Priya", "phone": "+91 98765 43210"}, format="json")
    duplicate = owner_client.post("/api/leads", {"name": "Sam again", "phone": "+1 (415) 555-2671"}, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["data"]["phone"] == "14155552671"
    assert indian.status_code == 201
    assert indian.json()["data"]["phone"] == "919876543210"
    assert duplicate.status_code == 400
    assert "phone" in duplicate.json()["errors"]
    assert sorted(Lead.objects.values_list("phone", flat=True)) == ["+14155552671", "+919876543210"]


@pytest.mark.parametrize("phone", ["98765abcde", "98765 ABCDE"])
def test_the_api_refuses_a_phone_with_letters(account, owner_client, phone):
    response = owner_client.post("/api/leads", {"name": "Vanity", "phone": phone}, format="json")

    assert response.status_code == 400
    assert "phone" in response.json()["errors"]
    assert not Lead.objects.exists()

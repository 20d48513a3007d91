"""Phone numbers: stored in E.164 (``+919876543210``), shown as the Heroshhi document
does (digits with country code, ``919876543210``), read with the account's default
region when written without a country code."""

from functools import lru_cache

import phonenumbers

from heroshhi.errors import ValidationFailed


class InvalidPhone(ValueError):
    pass


@lru_cache(maxsize=65536)
def to_e164(raw: str, default_region: str) -> str:
    """E.164 for ``raw``; raises InvalidPhone.

    ``+…`` and ``00…`` are international. Bare digits are tried as a national number of
    the default region first (which also accepts them with the region's country code,
    e.g. ``919876543210`` in IN), then as an international number without its ``+``
    (``14155552671``)."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("Phone number is required.")
    if len(text) > 40:
        raise InvalidPhone("Phone number is too long.")
    # phonenumbers reads letters as a keypad's digits ("98765abcde" → +919876522233):
    # a WhatsApp number has none, so a phone with letters is refused, not invented.
    if any(ch.isalpha() for ch in text):
        raise InvalidPhone("A phone number has only digits, spaces, +, - and brackets.")
    candidates: list[tuple[str, str | None]]
    if text.startswith(("+", "00")):
        candidates = [("+" + text.lstrip("+")[2:] if text.startswith("00") else text, None)]
    else:
        digits = "".join(ch for ch in text if ch.isdigit())
        candidates = [(text, default_region), ("+" + digits, None)] if digits else [(text, default_region)]
    for candidate, region in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidPhone(f"{text!r} is not a valid phone number.")


def phone_or_error(raw: str, default_region: str, *, field: str = "phone") -> str:
    """to_e164 for services: a bad number is a VALIDATION_ERROR on ``field``."""
    try:
        return to_e164(raw, default_region)
    except InvalidPhone as exc:
        raise ValidationFailed(f"{field}: {exc}", errors={field: [str(exc)]}) from None


def display_phone(e164: str) -> str:
    """The document's form: digits with the country code, no ``+``."""
    return e164.lstrip("+")

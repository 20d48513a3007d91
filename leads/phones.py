"""Phone numbers: stored in E.164 (``+919876543210``), shown as the Heroshhi document
does (digits with country code, ``919876543210``), read with the account's default
region when written without a country code.

``phonenumbers`` decides what is valid. Its ``parse`` + ``is_valid_number`` cost
~60 µs a number, most of it generic work (Unicode normalisation, extension and
RFC 3966 handling, one regular expression per number type) that a number written as
ASCII digits in groups does not need; a CSV import of 100,000 rows spent most of its
Python time there. So ``to_e164`` first tries ``_plain_e164``: for such numbers it
takes the same steps as ``phonenumbers.parse`` (country code, national prefix,
lengths) with the library's own metadata and rules, and answers only when the number
is valid, with the same E.164. Anything it is not sure of (another shape, a national
number that could carry its country code, a leading zero, a country code shared by
several regions, an invalid number) goes through ``phonenumbers`` itself. Tests
compare both paths over large random samples (leads/tests/test_import_phones.py).
"""

import re
from functools import cache, lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, SUPPORTED_REGIONS, PhoneMetadata
from phonenumbers import phonenumberutil as _pnu

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
    if _PLAIN.fullmatch(text) is not None:  # the common case, see _plain_e164
        if text[0] == "+":
            plain = _plain_e164(text, None)
        elif text.startswith("00"):
            plain = _plain_e164("+" + text[2:], None)
        else:  # the national reading comes first; the international one only if it is invalid
            plain = _plain_e164(text, default_region)
        if plain is not None:
            return plain
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
        plain = _plain_e164(candidate, region) if _PLAIN.fullmatch(candidate) is not None else None
        if plain is not None:
            return plain
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


# --- The plain-digits shortcut ---------------------------------------------------------

# ASCII digits in groups separated by one space or hyphen, optionally after a "+": text
# in which phonenumbers finds no extension, no second number, no letters and no
# RFC 3966 parts, and whose normalised form is its digits.
_PLAIN = re.compile(r"\+?[0-9]+(?:[ \-][0-9]+)*")
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumbers' _MIN_LENGTH_FOR_NSN and _MAX_LENGTH_FOR_NSN
# The private helpers parse() uses for the national prefix; without them (another
# version of the library) numbers with a national prefix take the library's path.
_strip_national_prefix = getattr(_pnu, "_maybe_strip_national_prefix_carrier_code", None)
_test_number_length = getattr(_pnu, "_test_number_length", None)
_PREFIX_NOT_STRIPPED = frozenset(
    getattr(_pnu.ValidationResult, name)
    for name in ("TOO_SHORT", "IS_POSSIBLE_LOCAL_ONLY", "INVALID_LENGTH")
    if hasattr(_pnu, "ValidationResult")
)


class _RegionRules:
    """One region's metadata, compiled for the shortcut."""

    def __init__(self, region: str, metadata):
        self.metadata = metadata
        self.country_code = metadata.country_code
        self.country_code_text = str(metadata.country_code)
        # A national number only when the country code is this region's alone (a shared
        # one, like +1, makes the region depend on the number).
        self.sole_region = COUNTRY_CODE_TO_REGION_CODE.get(metadata.country_code) == (region,)
        prefix = metadata.national_prefix_for_parsing
        self.national_prefix = re.compile(prefix).match if prefix else None
        idd = metadata.international_prefix
        self.idd = re.compile(idd).match if idd else None
        self.general = _desc_rule(metadata.general_desc)
        # phonenumbers' _number_type_helper: valid when the general description and
        # any type's description match; the mobile one is not consulted when it is
        # declared the same as the fixed-line one. (Mobile first: the order does not
        # change the answer, and WhatsApp numbers are mostly mobile.)
        descs = [] if metadata.same_mobile_and_fixed_line_pattern else [metadata.mobile]
        descs += [
            metadata.fixed_line,
            metadata.premium_rate,
            metadata.toll_free,
            metadata.shared_cost,
            metadata.voip,
            metadata.personal_number,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
        ]
        self.types = [rule for rule in map(_desc_rule, descs) if rule is not None]
        self._by_length: dict[int, object] = {}

    def is_valid(self, nsn: str) -> bool:
        """phonenumbers' is_valid_number for a national significant number of this
        region (no leading zero)."""
        matcher = self._by_length.get(len(nsn))
        if matcher is None:
            matcher = self._by_length[len(nsn)] = self._matcher(len(nsn))
        return matcher is not False and matcher(nsn) is not None

    def _matcher(self, length: int):
        """One fullmatch for the numbers of this length: the general description (a
        lookahead over the whole number) and any of the types' descriptions that allow
        the length, as alternatives; False when none can match. A fullmatch tries every
        alternative, so it answers as matching each pattern in turn would."""
        if self.general is None:
            return False
        lengths, general = self.general
        types = [pattern for lengths_, pattern in self.types if not lengths_ or length in lengths_]
        if (lengths and length not in lengths) or not types:
            return False
        return re.compile(f"(?=(?:{general})\\Z)(?:{'|'.join(f'(?:{pattern})' for pattern in types)})").fullmatch


def _desc_rule(desc) -> tuple[frozenset, str] | None:
    """(possible lengths, pattern) of a PhoneNumberDesc, None for one that never
    matches (phonenumbers' _is_number_matching_desc)."""
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), desc.national_number_pattern


@cache
def _rules(region: str) -> _RegionRules | None:
    if region not in SUPPORTED_REGIONS:  # the non-geographic "001" included
        return None
    metadata = PhoneMetadata.metadata_for_region(region, None)
    return None if metadata is None else _RegionRules(region, metadata)


def _plain_e164(candidate: str, region: str | None) -> str | None:
    """The E.164 of a valid number written as plain digits (``_PLAIN``, checked by the
    caller), exactly as ``phonenumbers.parse(candidate, region)`` + ``is_valid_number``
    + ``format_number`` would give it; None when the number is invalid or the
    shortcut is not sure (the caller then asks phonenumbers)."""
    digits = candidate.replace(" ", "").replace("-", "")
    if digits[0] == "+":
        # parse(): the country code is the shortest known prefix of 1-3 digits.
        digits = digits[1:]
        if len(digits) <= _MIN_NSN or digits[0] == "0":
            return None
        for size in (1, 2, 3):
            regions = COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:size]))
            if regions is not None:
                break
        else:
            return None
        if len(regions) != 1:
            return None
        rules = _rules(regions[0])
        national = digits[size:]
    else:
        if region is None or len(digits) < 3:
            return None
        rules = _rules(region)
        # parse() would look for an international prefix, or the region's country
        # code written without a "+", at the start: left to phonenumbers.
        if (
            rules is None
            or not rules.sole_region
            or (rules.idd is not None and rules.idd(digits) is not None)
            or digits.startswith(rules.country_code_text)
        ):
            return None
        national = digits
    if rules is None:
        return None
    if rules.national_prefix is not None and rules.national_prefix(national) is not None:
        # parse() strips it when what remains has a possible length.
        if _strip_national_prefix is None or _test_number_length is None or not _PREFIX_NOT_STRIPPED:
            return None
        _carrier, stripped, _ = _strip_national_prefix(national, rules.metadata)
        if _test_number_length(stripped, rules.metadata) not in _PREFIX_NOT_STRIPPED:
            national = stripped
    if not _MIN_NSN <= len(national) <= _MAX_NSN or national[0] == "0":
        return None  # too short or long (an error), or an Italian-style leading zero
    if not rules.is_valid(national):
        return None
    return f"+{rules.country_code}{national}"

"""The plain-digits shortcut of leads.phones.to_e164 (what makes a CSV import's phone
parsing cheap) answers exactly as phonenumbers does: checked over large random
samples of numbers of every region, in the shapes people type, valid and not."""

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from leads import phones
from leads.phones import InvalidPhone, to_e164

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]
EXAMPLES = [
    (region, example)
    for region in REGIONS
    for kind in TYPES
    if (example := phonenumbers.example_number_for_type(region, kind)) is not None
]


def library_e164(candidate: str, region: str | None) -> str | None:
    """What phonenumbers alone answers for one reading of a number."""
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def library_to_e164(raw: str, default_region: str) -> str:
    """to_e164 as it was before the shortcut: phonenumbers for every number."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("Phone number is required.")
    if len(text) > 40:
        raise InvalidPhone("Phone number is too long.")
    if any(ch.isalpha() for ch in text):
        raise InvalidPhone("A phone number has only digits, spaces, +, - and brackets.")
    if text.startswith(("+", "00")):
        candidates = [("+" + text.lstrip("+")[2:] if text.startswith("00") else text, None)]
    else:
        digits = "".join(ch for ch in text if ch.isdigit())
        candidates = [(text, default_region), ("+" + digits, None)] if digits else [(text, default_region)]
    for candidate, region in candidates:
        found = library_e164(candidate, region)
        if found is not None:
            return found
    raise InvalidPhone(f"{text!r} is not a valid phone number.")


def outcome(function, raw: str, region: str) -> tuple[str, str]:
    try:
        return ("ok", function(raw, region))
    except InvalidPhone as exc:
        return ("error", str(exc))


def grouped(rng: random.Random, digits: str) -> str:
    """Digits as people group them: runs of 1-5 joined by spaces, hyphens or nothing."""
    parts, i = [], 0
    while i < len(digits):
        size = rng.randint(1, 5)
        parts.append(digits[i : i + size])
        i += size
    return rng.choice([" ", "-", ""]).join(parts)


def mutated(rng: random.Random, digits: str) -> str:
    """A real number with a few digits changed, one added or one dropped: often still
    valid, often just not."""
    chars = list(digits)
    for _ in range(rng.randint(0, 4)):
        at = rng.randrange(len(chars)) if rng.random() < 0.3 else rng.randrange(max(0, len(chars) - 5), len(chars))
        chars[at] = rng.choice("0123456789")
    if rng.random() < 0.1:
        chars.append(rng.choice("0123456789"))
    if rng.random() < 0.1 and len(chars) > 3:
        chars.pop()
    return "".join(chars)


def random_digits(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(low, high)))


def sample(rng: random.Random) -> tuple[str, str | None]:
    """(text, region) as phones.to_e164 hands them to phonenumbers: international
    numbers with their "+" and no region, national ones with a region."""
    region, example = rng.choice(EXAMPLES)
    nsn = mutated(rng, phonenumbers.national_significant_number(example))
    code = str(example.country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    kind = rng.random()
    if kind < 0.35:
        return "+" + grouped(rng, code + nsn), None
    if kind < 0.6:  # national, mostly in its own region
        return grouped(rng, nsn), rng.choice([region, region, rng.choice(REGIONS)])
    if kind < 0.7:  # with the national prefix
        return grouped(rng, (metadata.national_prefix or "") + nsn), region
    if kind < 0.8:  # with the country code but no "+"
        return grouped(rng, code + nsn), region
    if kind < 0.9:  # any digits at all
        return ("+" if rng.random() < 0.5 else "") + grouped(rng, random_digits(rng, 1, 18)), rng.choice(REGIONS)
    prefix = rng.choice(["91", "1", "44", "7", "971", "39", "0", "00", "0091"])
    return grouped(rng, prefix + random_digits(rng, 6, 13)), rng.choice(["IN", "US", "GB", "AE", "RU", "IT"])


def test_the_shortcut_answers_only_valid_numbers_and_as_phonenumbers_does():
    rng = random.Random(20261123)
    answered = valid = 0
    for _ in range(40_000):
        text, region = sample(rng)
        expected = library_e164(text, region)
        valid += expected is not None
        if phones._PLAIN.fullmatch(text) is None:
            continue
        found = phones._plain_e164(text, region)
        if found is not None:
            answered += 1
            assert found == expected, (text, region)
    # The shortcut is not vacuous: it decides most of the valid numbers by itself.
    assert answered > 0.5 * valid, (answered, valid)


def test_indian_numbers_in_every_shape_the_bench_writes_never_reach_phonenumbers(monkeypatch):
    rng = random.Random(5)
    numbers = [f"{rng.choice('6789')}{rng.randrange(10**9):09d}" for _ in range(3000)]
    texts = []
    for digits in numbers:
        if digits.startswith("91"):  # a national number that could carry the country code: left to the library
            continue
        texts += [digits, f"+91 {digits[:5]} {digits[5:]}", f"+91{digits}", f"0{digits[:5]}-{digits[5:]}"]
        texts += [f"0091 {digits}", f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"]
    expected = {text: outcome(library_to_e164, text, "IN") for text in texts}

    def no_library(*args, **kwargs):
        raise AssertionError("phonenumbers.parse was called")

    monkeypatch.setattr(phonenumbers, "parse", no_library)
    to_e164.cache_clear()
    try:
        for text in texts:
            if expected[text][0] == "ok":
                assert to_e164(text, "IN") == expected[text][1], text
    finally:
        to_e164.cache_clear()


def messy(rng: random.Random) -> str:
    """Anything a spreadsheet cell may hold where a phone should be."""
    _, example = rng.choice(EXAMPLES)
    digits = mutated(rng, phonenumbers.national_significant_number(example))
    code = str(example.country_code)
    body = rng.choice([digits, code + digits, "0" + digits, random_digits(rng, 0, 20)])
    separators = ["", "", " ", "-", ".", "(", ")", "/", "  "]
    text = "".join(ch + (rng.choice(separators) if rng.random() < 0.4 else "") for ch in body)
    # U+FF0B is a full-width plus.
    text = rng.choice(["", "", "+", "00", "+" + code + " ", "++", "\uff0b", " ", "(0)"]) + text
    if rng.random() < 0.05:
        text += rng.choice([" ext 12", " x5", "#", ";isub=1", "a", "٣", "९८७"])
    if rng.random() < 0.02:
        text = text * rng.randint(2, 4)
    return text


@pytest.mark.parametrize("region", ["IN", "US", "GB", "AE", "BR", "IT", "DE", "ZZ"])
def test_to_e164_answers_exactly_as_phonenumbers_alone(region):
    rng = random.Random(f"to_e164-{region}")
    to_e164.cache_clear()
    try:
        for _ in range(4000):
            text = messy(rng)
            assert outcome(to_e164, text, region) == outcome(library_to_e164, text, region), (text, region)
    finally:
        to_e164.cache_clear()


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("098765 43210", "IN"),  # national prefix, stripped
        ("919876543210", "IN"),  # the country code without a "+", left to the library
        ("9198765432", "IN"),
        ("+39 06 1234 5678", "IN"),  # Italy keeps its leading zero
        ("06 1234 5678", "IT"),
        ("+1 415 555 2671", "IN"),  # +1 is shared by 25 regions
        ("415 555 2671", "US"),
        ("+7 912 345 67 89", "IN"),  # +7: Russia and Kazakhstan
        ("+44 20 7946 0958", "IN"),
        ("020 7946 0958", "GB"),
        ("+971 50 123 4567", "IN"),
        ("+800 1234 5678", "IN"),  # non-geographic
        ("+91 98765-43210", "ZZ"),
        ("+91 0 98765 43210", "IN"),  # a national prefix after the country code
        ("+55 11 96123 4567", "IN"),
        ("011 96123 4567", "BR"),
        ("+49 30 123456", "IN"),
        ("+91 12345", "IN"),
        ("12", "IN"),
        ("1-2", "IN"),
        ("+9", "IN"),
        ("00", "IN"),
        ("+0 98765 43210", "IN"),
    ],
)
def test_edge_cases_answer_as_phonenumbers_alone(raw, region):
    to_e164.cache_clear()
    assert outcome(to_e164, raw, region) == outcome(library_to_e164, raw, region)

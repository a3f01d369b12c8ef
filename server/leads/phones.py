"""Phone numbers in E.164 for ad-platform matching, parsed with the phonenumbers library."""

from __future__ import annotations

import phonenumbers


def to_e164(raw: str, country_hint: str = "") -> str:
    """`+16505551234` for a number that parses and is possible; "" otherwise. A number
    without a country code is read in the hint's country (ISO 3166-1 alpha-2), else the US."""
    text = raw.strip()
    if not text:
        return ""
    region = country_hint.strip().upper() if len(country_hint.strip()) == 2 else "US"
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

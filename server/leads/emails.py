"""Email addresses checked fast enough for bulk imports, with the same verdict and the same
normalised form as the API's check (email_validator, then lower-cased).

Most addresses are plain ASCII dot-atoms at an ordinary domain. For those the local part
needs no more than a regular expression, and the domain's verdict is email_validator's own,
asked once per distinct domain. Anything else (quoted or internationalised local parts, IDN
domains, odd lengths) goes to email_validator as a whole.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN = re.compile(rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")


@lru_cache(maxsize=100_000)
def _domain_problem(domain: str) -> str | None:
    try:
        validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def normalise(raw: str) -> str:
    """The address lower-cased and normalised; raises EmailNotValidError when invalid."""
    email = raw.strip()
    plain = _PLAIN.fullmatch(email)
    if plain is not None and len(plain.group(1)) <= 64 and len(email) <= 254:
        problem = _domain_problem(plain.group(2).lower())
        if problem is None:
            return email.lower()
        raise EmailNotValidError(problem)
    return validate_email(email, check_deliverability=False).normalized.lower()

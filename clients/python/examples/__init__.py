"""Usage examples of the tnx CRM Python client (type-checked with the repository's mypy)."""

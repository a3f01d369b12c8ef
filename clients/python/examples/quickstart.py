"""Leads, a rule list and its export, and a bulk import with progress, with the sync client.

CRM_API_KEY=tnx_… python examples/quickstart.py leads.csv
"""

from __future__ import annotations

import sys

import tnx_crm


def main(csv_path: str) -> int:
    # Target from CRM_GRPC_TARGET (or CRM_GRPC_HOST/PORT, default 127.0.0.1:50051), key from
    # CRM_API_KEY; both can be passed here instead.
    with tnx_crm.Client() as client:
        try:
            lead = client.leads.create(
                email="jane@acme.com",
                first_name="Jane",
                title="Head of Growth",
                status="NEW",
                custom_fields={"industry": "SaaS", "employees": 120},
            )
        except tnx_crm.AlreadyExists as e:
            print(f"already there ({e.reason})")
            lead = next(client.leads.list(filter='email = "jane@acme.com"'))
        print(lead.id, tnx_crm.enum_name(lead, "status"))

        # Every page, fetched as the loop goes.
        for found in client.leads.list(filter='custom.industry = "SaaS"', page_size=200):
            print(found.email, found.score)

        growth = client.lists.create(
            name="Growth leaders",
            membership="RULE",
            rules={
                "combinator": "AND",
                "rules": [{"condition": {"field": "title", "op": "contains", "value": "growth"}}],
            },
        )
        written = client.lists.export(growth.id, "growth.csv", format="GOOGLE_ADS")
        print(f"exported {written} bytes of {growth.member_count} leads")

        job = client.imports.upload(
            csv_path,
            mapping={"Work Mail": "email"},
            progress=lambda sent, total: print(f"\r{sent}/{total} bytes", end=""),
        )
        print()
        for state in client.imports.watch(job.id):
            print(tnx_crm.enum_name(state, "status"), state.rows_processed, state.rows_failed)
        try:
            client.leads.update(lead.id, score=-1, update_mask=["score"])
        except tnx_crm.InvalidArgument as e:
            for field, problem in e.field_violations:
                print(f"{field}: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "leads.csv"))

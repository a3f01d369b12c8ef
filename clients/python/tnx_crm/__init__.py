"""tnx CRM's Python client: `Client` (sync) and `AsyncClient` (asyncio) over the generated
`tnx.crm.v1` stubs, with the API key given once, default deadlines, retries on UNAVAILABLE,
pagination iterators, upload/export/watch helpers and typed errors.

    import tnx_crm

    with tnx_crm.Client("127.0.0.1:50051", api_key="tnx_…") as client:
        lead = client.leads.create(email="jane@acme.com", first_name="Jane")
        for lead in client.leads.list(filter='custom.industry = "SaaS"'):
            print(lead.id, lead.email)
"""

from tnx_crm._common import Retry, enum_name
from tnx_crm.aio import AsyncClient
from tnx_crm.client import Client
from tnx_crm.errors import (
    Aborted,
    AlreadyExists,
    ApiError,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)

__all__ = [
    "Aborted",
    "AlreadyExists",
    "ApiError",
    "AsyncClient",
    "Cancelled",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Retry",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "enum_name",
]

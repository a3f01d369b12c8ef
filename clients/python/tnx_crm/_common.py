"""What the sync and asyncio clients share: defaults, the channel's retry policy, turning
keyword arguments into request messages, and the file ends of uploads and exports."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from google.protobuf import field_mask_pb2, json_format, message_factory, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051  # the server's CRM_GRPC_PORT default
DEFAULT_TIMEOUT = 30.0
CHUNK_BYTES = 1024 * 1024  # the server stores uploads in 1 MB chunks

M = TypeVar("M", bound=Message)
FileArg = str | os.PathLike[str] | IO[bytes]
Progress = Any  # Callable[[int, int], object]: (bytes sent, total bytes); kept loose for lambdas


@dataclass(frozen=True)
class Retry:
    """Retries of calls that fail with UNAVAILABLE, done by gRPC itself from the channel's
    service config: up to `max_attempts` in all (gRPC caps it at 5), the n-th retry after a
    random delay of up to min(initial_backoff * multiplier**(n-1), max_backoff) seconds."""

    max_attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 5.0
    multiplier: float = 2.0


def default_target() -> str:
    """CRM_GRPC_TARGET, else CRM_GRPC_HOST:CRM_GRPC_PORT as the server reads them."""
    target = os.environ.get("CRM_GRPC_TARGET", "")
    if target:
        return target
    host = os.environ.get("CRM_GRPC_HOST") or DEFAULT_HOST
    port = os.environ.get("CRM_GRPC_PORT") or str(DEFAULT_PORT)
    return f"{host}:{port}"


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    key = os.environ.get("CRM_API_KEY", "") if api_key is None else api_key
    return (("authorization", f"Bearer {key}"),) if key else ()


def channel_options(
    retry: Retry | None, extra: Iterable[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        # After a disconnect gRPC waits before connecting again, by default up to 120 s; a
        # restarted server should be reached within seconds.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]
    if retry is not None:
        policy = {
            "maxAttempts": retry.max_attempts,
            "initialBackoff": f"{retry.initial_backoff}s",
            "maxBackoff": f"{retry.max_backoff}s",
            "backoffMultiplier": retry.multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        # name [{}]: every method of every service on this channel.
        config = {"methodConfig": [{"name": [{}], "retryPolicy": policy}]}
        options += [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config))]
    return [*options, *extra]


# -- keyword arguments -> messages ---------------------------------------------------------


def enum_value(enum: EnumDescriptor, value: str | int) -> int:
    """An enum value from its number, its full name (`LEAD_STATUS_NEW`) or its short name in
    any case (`new`, `Csv`)."""
    if isinstance(value, int):
        return value
    wanted = value.strip().upper()
    if wanted in enum.values_by_name:
        return int(enum.values_by_name[wanted].number)
    matches = [v for name, v in enum.values_by_name.items() if name.endswith(f"_{wanted}")]
    if len(matches) == 1:
        return int(matches[0].number)
    names = ", ".join(n for n in enum.values_by_name if not n.endswith("UNSPECIFIED"))
    raise ValueError(f"{value!r} is not a {enum.name} (one of {names})")


def enum_name(message: Message, field: str) -> str:
    """The name of an enum field's value (`job.status` 4 -> "SUCCEEDED")."""
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    assert descriptor.enum_type is not None, f"{field} is not an enum field"
    number = getattr(message, field)
    value = descriptor.enum_type.values_by_number.get(number)
    return str(value.name) if value is not None else str(number)


def timestamp(value: datetime.datetime | datetime.date | str) -> timestamp_pb2.Timestamp:
    """A Timestamp from a datetime (naive is UTC), a date, or an RFC 3339 string or date."""
    stamp = timestamp_pb2.Timestamp()
    if isinstance(value, str):
        if len(value) == 10:  # 2026-01-01
            value = datetime.date.fromisoformat(value)
        else:
            stamp.FromJsonString(value)
            return stamp
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    stamp.FromDatetime(value)
    return stamp


def _convert(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None:
        if field.is_repeated:
            return [enum_value(field.enum_type, v) for v in value]
        return enum_value(field.enum_type, value)
    kind = field.message_type
    if kind is None or kind.GetOptions().map_entry:
        return value
    if kind.full_name == "google.protobuf.Timestamp" and not isinstance(value, Message):
        return timestamp(value)
    if kind.full_name == "google.protobuf.FieldMask" and not isinstance(value, Message):
        return field_mask_pb2.FieldMask(paths=list(value))
    cls = message_factory.GetMessageClass(kind)
    if field.is_repeated:
        return [
            json_format.ParseDict(dict(v), cls()) if isinstance(v, Mapping) else v for v in value
        ]
    if isinstance(value, Mapping) and kind.full_name != "google.protobuf.Struct":
        # Nested messages as JSON-like dicts: enum names, Value fields, RFC 3339 times.
        return json_format.ParseDict(dict(value), cls())
    return value


def build(cls: type[M], fields: Mapping[str, Any], base: M | None = None) -> M:
    """`cls(**fields)` that also takes enum names, dicts for nested messages, datetimes or
    RFC 3339 strings for timestamps and path lists for field masks; None values are left
    unset. Fields go over a copy of `base` when given."""
    converted: dict[str, Any] = {}
    for name, value in fields.items():
        field = cls.DESCRIPTOR.fields_by_name.get(name)
        if field is None:
            known = ", ".join(cls.DESCRIPTOR.fields_by_name)
            raise TypeError(f"{cls.__name__} has no field {name!r} (fields: {known})")
        if value is not None:
            converted[name] = _convert(cast(FieldDescriptor, field), value)
    message = cls(**converted)
    if base is not None:
        merged = cls()
        merged.CopyFrom(base)
        merged.MergeFrom(message)
        return merged
    return message


def paged(fields: Mapping[str, Any], page_size: int | None, **fixed: Any) -> dict[str, Any]:
    """The fields of a list request: `page_size` is its `limit`, the size of one page (the
    iterators fetch every page; `itertools.islice` caps the total)."""
    if "limit" in fields:
        raise TypeError("pass page_size=… for the page size; itertools.islice caps the total")
    return {**fields, **fixed, "limit": page_size}


def mask(paths: Iterable[str] | None) -> field_mask_pb2.FieldMask | None:
    return None if paths is None else field_mask_pb2.FieldMask(paths=list(paths))


# -- files ---------------------------------------------------------------------------------

_FORMATS = {
    ".csv": "CSV",
    ".tsv": "CSV",
    ".txt": "CSV",
    ".json": "JSON",
    ".ndjson": "NDJSON",
    ".jsonl": "NDJSON",
}


def guess_format(name: str) -> str:
    return _FORMATS.get(Path(name).suffix.lower(), "CSV")


def mapping_pairs(mapping: Mapping[str, str] | Iterable[str] | None) -> list[str]:
    """`{"Work Mail": "email"}` or `["Work Mail=email"]` as the request's `Header=field` list."""
    if mapping is None:
        return []
    if isinstance(mapping, Mapping):
        return [f"{header}={field}" for header, field in mapping.items()]
    return list(mapping)


class UploadSource:
    """The file of an upload, opened before the call starts: a missing or unreadable file is
    an OSError from here, never an error from inside gRPC's request iterator. A read error
    during the call is kept in `error`, so the caller can raise it instead of gRPC's UNKNOWN
    ("Exception iterating requests!")."""

    def __init__(self, file: FileArg, chunk_size: int = CHUNK_BYTES) -> None:
        self.chunk_size = chunk_size
        self.error: OSError | None = None
        if isinstance(file, str | os.PathLike):
            self.name = os.fspath(file)
            self._handle: IO[bytes] = open(self.name, "rb")  # noqa: SIM115 (closed in close())
            self._owned = True
        else:
            self.name = str(getattr(file, "name", ""))
            self._handle, self._owned = file, False
        self.total = self._size()
        self.sent = 0

    def _size(self) -> int:
        try:
            remaining = os.fstat(self._handle.fileno()).st_size - self._handle.tell()
            return max(remaining, 0)
        except (OSError, AttributeError, ValueError):
            return 0  # a pipe or an in-memory stream of unknown length

    def read(self) -> bytes:
        try:
            return self._handle.read(self.chunk_size)
        except OSError as exc:
            self.error = exc
            raise

    def blocks(self) -> Iterator[bytes]:
        while block := self.read():
            yield block

    def close(self) -> None:
        if self._owned:
            self._handle.close()


class ExportSink:
    """Where a server-streamed file goes: a path (removed again if the stream fails, so no
    half file is left looking complete) or a writable binary file object."""

    def __init__(self, file: FileArg) -> None:
        self.written = 0
        if isinstance(file, str | os.PathLike):
            self.path: Path | None = Path(file)
            self._handle: IO[bytes] = self.path.open("wb")
        else:
            self.path, self._handle = None, file

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self.written += len(data)

    def finish(self, ok: bool) -> None:
        if self.path is None:
            self._handle.flush()
            return
        self._handle.close()
        if not ok:
            self.path.unlink(missing_ok=True)

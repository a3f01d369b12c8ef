"""Request messages that both clients build the same way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tnx.crm.v1 import import_pb2, import_service_pb2, segment_service_pb2

from tnx_crm._common import UploadSource, enum_value, guess_format, mapping_pairs

Job = import_pb2.ImportJob
TERMINAL = (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED)
# WatchEvents' keep-alive: not an event, but its cursor resumes the watch.
HEARTBEAT = "heartbeat"


def upload_header(
    source: UploadSource,
    *,
    format: str | int | None,
    mapping: Mapping[str, str] | Iterable[str] | None,
    mode: str | int,
    segment_ids: Iterable[str],
    default_source: str,
    request_id: str,
    encoding: str,
) -> import_service_pb2.UploadImportRequest:
    """The first message of an upload: everything but the data."""
    file_format = format if format is not None else guess_format(source.name)
    return import_service_pb2.UploadImportRequest(
        format=Job.Format.ValueType(enum_value(Job.Format.DESCRIPTOR, file_format)),
        mapping=mapping_pairs(mapping),
        mode=Job.Mode.ValueType(enum_value(Job.Mode.DESCRIPTOR, mode)),
        segment_ids=list(segment_ids),
        default_source=default_source,
        request_id=request_id,
        declared_size=source.total,
        encoding=encoding,
    )


def export_request(
    id: str, format: str | int, fields: Iterable[str]
) -> segment_service_pb2.ExportSegmentRequest:
    formats = segment_service_pb2.ExportSegmentRequest.Format
    return segment_service_pb2.ExportSegmentRequest(
        id=id, format=formats.ValueType(enum_value(formats.DESCRIPTOR, format)), fields=list(fields)
    )

import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tnx.crm.v1 import lead_pb2 as _lead_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateLeadRequest(_message.Message):
    __slots__ = ("lead",)
    LEAD_FIELD_NUMBER: _ClassVar[int]
    lead: _lead_pb2.Lead
    def __init__(self, lead: _Optional[_Union[_lead_pb2.Lead, _Mapping]] = ...) -> None: ...

class GetLeadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UpdateLeadRequest(_message.Message):
    __slots__ = ("lead", "update_mask")
    LEAD_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    lead: _lead_pb2.Lead
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, lead: _Optional[_Union[_lead_pb2.Lead, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ArchiveLeadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UnarchiveLeadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListLeadsRequest(_message.Message):
    __slots__ = ("limit", "cursor", "segment_id", "source", "score_min", "score_max", "last_activity_after", "last_activity_before", "created_after", "created_before", "filter", "include_archived")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCORE_MIN_FIELD_NUMBER: _ClassVar[int]
    SCORE_MAX_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AFTER_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    segment_id: str
    source: str
    score_min: int
    score_max: int
    last_activity_after: _timestamp_pb2.Timestamp
    last_activity_before: _timestamp_pb2.Timestamp
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    filter: str
    include_archived: bool
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ..., segment_id: _Optional[str] = ..., source: _Optional[str] = ..., score_min: _Optional[int] = ..., score_max: _Optional[int] = ..., last_activity_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[str] = ..., include_archived: _Optional[bool] = ...) -> None: ...

class ListLeadsResponse(_message.Message):
    __slots__ = ("leads", "next_cursor")
    LEADS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    leads: _containers.RepeatedCompositeFieldContainer[_lead_pb2.Lead]
    next_cursor: str
    def __init__(self, leads: _Optional[_Iterable[_Union[_lead_pb2.Lead, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class SearchLeadsRequest(_message.Message):
    __slots__ = ("query", "segment_id", "filter", "limit", "cursor", "include_archived")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    query: str
    segment_id: str
    filter: str
    limit: int
    cursor: str
    include_archived: bool
    def __init__(self, query: _Optional[str] = ..., segment_id: _Optional[str] = ..., filter: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., include_archived: _Optional[bool] = ...) -> None: ...

class SearchLeadsResponse(_message.Message):
    __slots__ = ("leads", "next_cursor")
    LEADS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    leads: _containers.RepeatedCompositeFieldContainer[_lead_pb2.Lead]
    next_cursor: str
    def __init__(self, leads: _Optional[_Iterable[_Union[_lead_pb2.Lead, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

"""Log lines as text (default) or, with CRM_LOG_FORMAT=json, one JSON object a line carrying
the request id of the call being served, for a log pipeline to index."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

from server.rpc.context import current_request_id


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get(None) or "-"
        return True


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestId())
    if os.environ.get("CRM_LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s [%(request_id)s]")
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)

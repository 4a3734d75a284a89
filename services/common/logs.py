"""Structured logs: one JSON object per line on stderr, with the service name and trace id.

The latest records at WARNING and above are also kept in memory (`RECENT`), so a service can say
what went wrong lately (GetServiceInfo, services/common/info.py) wherever its stderr goes.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            payload["trace_id"] = format(context.trace_id, "032x")
        payload.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


@dataclass(frozen=True)
class Recorded:
    at: datetime
    level: str      # warning, error, critical
    logger: str
    message: str    # the event and its fields on one line, cut to MESSAGE_CHARS
    trace_id: str   # empty outside a trace


class RecentRecords(logging.Handler):
    """The latest `capacity` records at WARNING and above, in memory."""

    MESSAGE_CHARS = 500

    def __init__(self, capacity: int = 50):
        super().__init__(logging.WARNING)
        self.capacity = capacity
        self._records: deque[Recorded] = deque(maxlen=capacity)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = getattr(record, "fields", {}) or {}
            text = " ".join([record.getMessage(), *(f"{key}={value}" for key, value in fields.items())])
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            text = " ".join(text.split())
            if len(text) > self.MESSAGE_CHARS:
                text = text[:self.MESSAGE_CHARS - 3] + "..."
            context = trace.get_current_span().get_span_context()
            recorded = Recorded(datetime.fromtimestamp(record.created, UTC), record.levelname.lower(), record.name,
                                text, format(context.trace_id, "032x") if context.is_valid else "")
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            self.handleError(record)
            return
        with self._guard:
            self._records.append(recorded)

    def latest(self, count: int) -> list[Recorded]:
        """The newest `count` records, oldest first."""
        with self._guard:
            return list(self._records)[-count:] if count > 0 else []


RECENT = RecentRecords()


def setup_logging(service: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler, RECENT]
    root.setLevel(level.upper())


def event(logger: logging.Logger, message: str, level: int = logging.INFO, exc_info: bool = False,
          **fields) -> None:
    """Log one event with structured fields (they become keys of the JSON line)."""
    logger.log(level, message, exc_info=exc_info, extra={"fields": fields})

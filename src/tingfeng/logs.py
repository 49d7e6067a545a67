"""Logging for people (text) or for a log collector (one JSON object per line).

`configure` is called once by the command line. In JSON each line carries the time (ISO 8601,
UTC), level, logger, message, the process role (web, worker, scheduler, all, or the command)
and pid, every `extra=` field of the call, and an exception as one string field, so a
collector (journald, Loki, Elasticsearch) can filter by role and machine without parsing text.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_role = "tingfeng"


def set_role(role: str) -> None:
    """Name this process's part (web, worker, scheduler, all, or a command) in every line."""
    global _role
    _role = role


def current_role() -> str:
    return _role


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def __init__(self) -> None:
        super().__init__()
        self.host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": _role,
            "pid": record.process or os.getpid(),
            "host": self.host,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra field that JSON cannot hold (a datetime, a Path) is written as
        # text rather than losing the whole line.
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, fmt: str = "text", role: str | None = None) -> None:
    """Set up the root logger for this process (as `logging.basicConfig`: a process, or a test
    runner, that already has handlers keeps them)."""
    if role:
        set_role(role)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Migration chatter is noise on every command; warnings still show.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))

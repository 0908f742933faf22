"""Log lines of the standalone server: text or JSON, each with its time and level, and, when
`server.access_log` is on, one access line per image request (method, path, status, client
address, user agent, store, bytes, the cache tier that answered, render ms, total ms).

The access record is a context variable filled by the stages that know each fact (the cache
its tier, the render its time); with the access log off nothing is recorded.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
ACCESS = logging.getLogger("imgproxy.access")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
IN_MESSAGE = ("method", "path", "status")  # an access line's message: GET /media/a.jpg 200

_current: ContextVar[dict[str, Any] | None] = ContextVar("imgproxy_access", default=None)


def configure(*, level: str, fmt: str) -> None:
    """One handler on the root logger (uvicorn's and imgproxy's loggers propagate to it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class TextFormatter(logging.Formatter):
    """An access line's message says method, path and status; the other fields follow as
    key=value, a value quoted (JSON escapes) when it has a space, a quote or a control
    character: a user agent can hold any of them, and must not start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, Any] | None = getattr(record, "access", None)
        if fields:
            line += "".join(
                f" {k}={_text(v)}"
                for k, v in fields.items()
                if v is not None and k not in IN_MESSAGE
            )
        return line


def _text(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    return json.dumps(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, an access line's fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "access", None) or {})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def begin() -> dict[str, Any]:
    record: dict[str, Any] = {}
    _current.set(record)
    return record


def note(key: str, value: Any) -> None:
    """Adds a fact to the current request's access line (no-op with the access log off)."""
    record = _current.get()
    if record is not None:
        record[key] = value


def access(fields: dict[str, Any]) -> None:
    method, path, status = (fields[key] for key in IN_MESSAGE)
    ACCESS.info("%s %s %s", method, path, status, extra={"access": fields})

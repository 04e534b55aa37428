"""Structured logs: one JSON line per association and per DICOM operation.

Audit lines carry UIDs, AE titles, addresses, counts, statuses and durations, never
patient names or other PHI, and never credentials. Security events (refused
associations, isolation refusals, TLS failures) are logged at WARNING.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

AUDIT_LOGGER = "tenant_server.audit"
# Free-text fields carry library messages, which may quote the offending value (a
# patient's name in a malformed query, say): quoted parts are replaced, the rest kept.
FREE_TEXT_FIELDS = ("error", "reason")
FREE_TEXT_LIMIT = 300
_QUOTED = re.compile(r"b?'(?:\\.|[^'\\])*'|b?\"(?:\\.|[^\"\\])*\"")


def redact(text: str) -> str:
    """A library message without the values it quotes, and bounded in length."""
    return _QUOTED.sub("'…'", text)[:FREE_TEXT_LIMIT]


# The line's own keys; an event field of the same name is renamed rather than let
# overwrite them (a query's "level" must not replace the line's severity).
RESERVED = ("ts", "level", "logger", "event")
RENAMED = {"level": "query_level"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not record.name.startswith("tenant_server"):
            message = redact(message)  # pydicom and pynetdicom quote values they cannot read
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": message,
        }
        for key, value in getattr(record, "fields", {}).items():
            payload[RENAMED.get(key, f"{key}_") if key in RESERVED else key] = value
        for key in FREE_TEXT_FIELDS:
            if isinstance(payload.get(key), str):
                payload[key] = redact(payload[key])
        if record.exc_info:
            payload["error"] = redact(self.formatException(record.exc_info).splitlines()[-1])
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stdout for everything this process logs; pynetdicom's chatter capped.

    Python warnings (pydicom warns about invalid values, quoting them) go through logging
    too, so they are JSON, redacted, and not written raw to stderr.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.captureWarnings(True)


class Audit:
    def __init__(self, tenant_aet: str) -> None:
        self.tenant = tenant_aet
        self.logger = logging.getLogger(AUDIT_LOGGER)

    def event(self, name: str, *, security: bool = False, **fields: Any) -> None:
        level = logging.WARNING if security else logging.INFO
        if self.logger.isEnabledFor(level):
            self.logger.log(level, name, extra={"fields": {"tenant": self.tenant, **fields}})

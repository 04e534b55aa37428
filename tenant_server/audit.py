"""Structured logs: one JSON line per association and per DICOM operation.

Audit lines carry UIDs, AE titles, addresses, counts, statuses and durations, never
patient names or other PHI, and never credentials. Security events (refused
associations, isolation refusals, TLS failures) are logged at WARNING.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

AUDIT_LOGGER = "tenant_server.audit"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stdout for everything this process logs; pynetdicom's chatter capped."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


class Audit:
    def __init__(self, tenant_aet: str) -> None:
        self.tenant = tenant_aet
        self.logger = logging.getLogger(AUDIT_LOGGER)

    def event(self, name: str, *, security: bool = False, **fields: Any) -> None:
        level = logging.WARNING if security else logging.INFO
        if self.logger.isEnabledFor(level):
            self.logger.log(level, name, extra={"fields": {"tenant": self.tenant, **fields}})

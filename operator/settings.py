"""Every knob of the operator, read from the environment in one place.

kopf's own command line covers what kopf owns (``--namespace``/``KOPF_RUN_NAMESPACE``,
``--all-namespaces``, ``--standalone``, ``--liveness``); these are the rest. They are read
when the operator starts (not at import) so tests and restarts see the current environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "MTDICOM_"


@dataclass(frozen=True)
class OperatorSettings:
    default_image: str = "ghcr.io/mtdicom/multitenant-dicom:0.1.0"
    """Image of tenant pods whose resource leaves ``spec.image`` out (the CRD default is the same)."""
    status_interval: float = 10.0
    """Seconds between status refreshes from the children's state (a kopf timer per resource)."""
    status_initial_delay: float = 2.0
    request_timeout: float = 30.0
    """Seconds for one Kubernetes API request of the operator (children)."""
    watch_server_timeout: int = 300
    """Server-side watch timeout; kopf reconnects after it, which heals half-open connections."""
    watch_client_timeout: int = 310
    max_workers: int = 16
    """Threads for the synchronous handlers (one busy resource occupies one)."""
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    """Retry delays of failed reconciliations: base * 2**retry, capped."""
    repair_drift: bool = True
    """Recreate children that someone deleted, found by the status timer."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(PREFIX + name)
    return default if raw in (None, "") else float(raw)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(PREFIX + name)
    return default if raw in (None, "") else int(raw)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name)
    return default if raw in (None, "") else raw.strip().lower() in {"1", "true", "yes", "on"}


def load(env: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from ``MTDICOM_*`` variables (``MTDICOM_STATUS_INTERVAL=5`` ...)."""
    env = os.environ if env is None else env
    base = OperatorSettings()
    return OperatorSettings(
        default_image=env.get(PREFIX + "DEFAULT_IMAGE") or base.default_image,
        status_interval=_float(env, "STATUS_INTERVAL", base.status_interval),
        status_initial_delay=_float(env, "STATUS_INITIAL_DELAY", base.status_initial_delay),
        request_timeout=_float(env, "REQUEST_TIMEOUT", base.request_timeout),
        watch_server_timeout=_int(env, "WATCH_SERVER_TIMEOUT", base.watch_server_timeout),
        watch_client_timeout=_int(env, "WATCH_CLIENT_TIMEOUT", base.watch_client_timeout),
        max_workers=_int(env, "MAX_WORKERS", base.max_workers),
        backoff_base=_float(env, "BACKOFF_BASE", base.backoff_base),
        backoff_max=_float(env, "BACKOFF_MAX", base.backoff_max),
        repair_drift=_bool(env, "REPAIR_DRIFT", base.repair_drift),
    )

"""Operator start, stop and liveness: kopf settings, the API client, the probe."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from mtdicom_operator import settings as operator_settings
from mtdicom_operator.crd import GROUP
from mtdicom_operator.handlers.indexes import NO_INDEX, TenantIndex
from mtdicom_operator.kube import Kube, connection_info, load_configuration


@kopf.on.login()
def login(logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the very configuration our own client uses (see kube.py).

    kopf calls it again when the API answers 401, which picks up rotated service-account
    tokens.
    """
    configuration = load_configuration()
    logger.debug("Logging in to %s", configuration.host)
    return kopf.ConnectionInfo(**connection_info(configuration))


@kopf.on.startup()
def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """Tune kopf and create the shared API client before any resource is handled."""
    ours = operator_settings.load()
    # One replica, no peering: the Deployment uses strategy Recreate (docs/kubernetes.md).
    settings.peering.standalone = True
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Per-child log lines stay in the log; Events carry summaries and warnings only.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.networking.request_timeout = ours.request_timeout
    settings.execution.max_workers = ours.max_workers
    memo.settings = ours
    memo.kube = Kube(load_configuration(), timeout=ours.request_timeout)
    logger.info(
        "Operator configured: status every %ss, %s worker threads, drift repair %s",
        ours.status_interval,
        ours.max_workers,
        "on" if ours.repair_drift else "off",
    )


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    kube = memo.get("kube")
    if kube is not None:
        kube.close()


@kopf.on.probe(id="tenantDeployments")
def count_deployments(*, tenant_deployments: TenantIndex = NO_INDEX, **_: Any) -> int:
    """Reported on the liveness endpoint: how many tenant Deployments the operator sees."""
    return sum(len(store) for store in tenant_deployments.values())

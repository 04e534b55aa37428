"""Keep each resource's status in step with its children, and put back deleted children.

An async daemon per resource rather than a kopf timer: the interval comes from the
settings read at start-up, and an idle daemon costs a sleeping task, not a thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from mtdicom_operator.builders import Owner, desired_servers
from mtdicom_operator.crd import GROUP, PLURAL, VERSION
from mtdicom_operator.handlers.common import current_status, invalid_message, plain_spec, spec_digest
from mtdicom_operator.handlers.indexes import NO_INDEX, TenantIndex
from mtdicom_operator.kube import KubeError
from mtdicom_operator.reconcile import reconcile_children
from mtdicom_operator.status import same_status


def missing_children(
    body: kopf.Body, spec: dict[str, Any], tenant_deployments: TenantIndex, tenant_services: TenantIndex
) -> list[str]:
    owner = Owner.from_body(body)
    key = (owner.namespace, owner.uid)
    deployments = {state.name for state in tenant_deployments.get(key, [])}
    services = {state.name for state in tenant_services.get(key, [])}
    missing = []
    for server in desired_servers(owner, spec):
        if server.name not in deployments:
            missing.append(f"Deployment/{server.name}")
        if server.name not in services:
            missing.append(f"Service/{server.name}")
    return missing


async def refresh(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    tenant_deployments: TenantIndex,
    tenant_services: TenantIndex,
    suspects: set[str],
) -> set[str]:
    """One tick: repair drift if a child stayed missing for two ticks, then patch the status."""
    spec = plain_spec(body)
    invalid = invalid_message(spec)
    reconciled = memo.get("reconciled_spec") == spec_digest(spec)
    now_missing: set[str] = set()
    if invalid is None and reconciled and memo.settings.repair_drift:
        now_missing = set(missing_children(body, spec, tenant_deployments, tenant_services))
        # One tick of grace: a just-created child may not have reached the index yet.
        if now_missing & suspects:
            owner = Owner.from_body(body)
            outcome = await asyncio.to_thread(reconcile_children, memo.kube, owner, spec, logger)
            if outcome.changed:
                kopf.warn(
                    body,
                    reason="DriftRepaired",
                    message=f"children were changed outside: {outcome.summary()}",
                )
            now_missing = set()
    status = current_status(body, memo, tenant_deployments, tenant_services, spec=spec, invalid=invalid)
    if not same_status(body.get("status"), status):
        owner = Owner.from_body(body)
        await asyncio.to_thread(memo.kube.patch_status, owner.namespace, owner.name, status)
    return now_missing


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def status_daemon(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    tenant_deployments: TenantIndex = NO_INDEX,
    tenant_services: TenantIndex = NO_INDEX,
    **_: Any,
) -> None:
    await stopped.wait(memo.settings.status_initial_delay)
    suspects: set[str] = set()
    while not stopped:
        try:
            suspects = await refresh(body, memo, logger, tenant_deployments, tenant_services, suspects)
        except KubeError as exc:
            # The next tick tries again; the reconcile handler owns retries of the children.
            logger.warning("Status refresh failed: %s", exc)
        await stopped.wait(memo.settings.status_interval)

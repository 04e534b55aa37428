"""Create, update, resume: reconcile the children of a MultitenantDicomServer.

Spec errors are permanent (reported in the status and an Event, then kopf waits for the
next spec change: no hot loop); API errors are temporary and retried with exponential
backoff.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from mtdicom_operator.builders import Owner
from mtdicom_operator.crd import GROUP, PLURAL, VERSION
from mtdicom_operator.handlers.common import current_status, invalid_message, plain_spec, spec_digest
from mtdicom_operator.handlers.indexes import NO_INDEX, TenantIndex
from mtdicom_operator.kube import KubeError
from mtdicom_operator.reconcile import reconcile_children
from mtdicom_operator.settings import OperatorSettings


def _backoff(settings: OperatorSettings, retry: int) -> float:
    return float(min(settings.backoff_base * (2**retry), settings.backoff_max))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    retry: int,
    tenant_deployments: TenantIndex = NO_INDEX,
    tenant_services: TenantIndex = NO_INDEX,
    **_: Any,
) -> None:
    owner = Owner.from_body(body)
    spec = plain_spec(body)
    invalid = invalid_message(spec)
    if invalid is not None:
        memo.reconciled_spec = None
        patch.status.update(
            current_status(body, memo, tenant_deployments, tenant_services, spec=spec, invalid=invalid)
        )
        kopf.warn(body, reason="InvalidSpec", message=invalid)
        raise kopf.PermanentError(f"invalid spec: {invalid}")

    try:
        outcome = reconcile_children(memo.kube, owner, spec, logger)
    except KubeError as exc:
        memo.reconcile_error = str(exc)
        patch.status.update(current_status(body, memo, tenant_deployments, tenant_services, spec=spec))
        delay = _backoff(memo.settings, retry)
        raise kopf.TemporaryError(f"{exc} (retry {retry + 1} in {delay:.1f}s)", delay=delay) from exc

    memo.reconcile_error = None
    memo.reconciled_spec = spec_digest(spec)
    if owner.generation is not None:
        memo.observed_generation = owner.generation
    patch.status.update(current_status(body, memo, tenant_deployments, tenant_services, spec=spec))
    if outcome.changed:
        # kopf.event, not kopf.info: posting.level (WARNING) keeps handler logs out of Events.
        kopf.event(body, type="Normal", reason="Reconciled", message=outcome.summary())

"""What the reconcile handler and the status daemon share: the view of one resource.

Both run in the same process for the same object and share kopf's per-object ``memo``:
the reconcile handler records there which spec it applied and the last error, so the
status daemon never rebuilds the status from a ``body`` that lags behind its own writes.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
from mtdicom_operator.builders import Owner, desired_servers
from mtdicom_operator.crd import validate_spec
from mtdicom_operator.handlers.indexes import TenantIndex
from mtdicom_operator.status import compute_status, observe


def plain_spec(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body.get("spec") or {}))


def spec_digest(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def invalid_message(spec: dict[str, Any]) -> str | None:
    errors = validate_spec(spec)
    if not errors:
        return None
    shown = "; ".join(str(error) for error in errors[:10])
    return shown + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")


def current_status(
    body: kopf.Body,
    memo: kopf.Memo,
    tenant_deployments: TenantIndex,
    tenant_services: TenantIndex,
    *,
    spec: dict[str, Any] | None = None,
    invalid: str | None = None,
) -> dict[str, Any]:
    """The status this resource should show now, from the indexes and the memo."""
    owner = Owner.from_body(body)
    spec = plain_spec(body) if spec is None else spec
    previous = body.get("status") or {}
    if invalid is None:
        invalid = invalid_message(spec)
    observed = memo.get("observed_generation", previous.get("observedGeneration"))
    reconciled = memo.get("reconciled_spec") == spec_digest(spec)
    if memo.get("reconciled_spec") is None and owner.generation is not None:
        # Just restarted: trust the status a previous run wrote for this very generation,
        # so that Ready does not blink to False on every operator restart.
        reconciled = previous.get("observedGeneration") == owner.generation
    entries: list[dict[str, Any]] = []
    failures: list[str] = []
    if invalid is None:
        key = (owner.namespace, owner.uid)
        entries, failures = observe(
            desired_servers(owner, spec),
            list(tenant_deployments.get(key, [])),
            list(tenant_services.get(key, [])),
        )
    status = compute_status(
        generation=owner.generation,
        reconciled=reconciled,
        servers=entries,
        failures=failures,
        previous_conditions=previous.get("conditions") or [],
        invalid=invalid,
        reconcile_error=memo.get("reconcile_error") if invalid is None else None,
    )
    if invalid is not None and owner.generation is not None:
        # Observed and judged: nothing more happens until the spec changes. kstatus (Flux)
        # reads Stalled only once observedGeneration has caught up with the generation.
        observed = owner.generation
    if observed is not None:
        status["observedGeneration"] = observed
    return status

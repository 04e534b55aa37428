"""In-memory indexes of the children, fed by kopf's watches of Deployments and Services.

The status is computed from these instead of listing the children every few seconds: with
100 resources that would be 200 list calls per interval.
"""

from __future__ import annotations

from typing import Any

import kopf
from mtdicom_operator import naming
from mtdicom_operator.status import DeploymentState, ServiceState, index_key

TenantIndex = kopf.Index[tuple[str, str], Any]
# kopf injects the indexes by parameter name; the default only satisfies type checkers.
NO_INDEX: TenantIndex = {}  # type: ignore[assignment]
_OURS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}


@kopf.index("apps", "v1", "deployments", labels=_OURS)
async def tenant_deployments(body: kopf.Body, **_: Any) -> dict[tuple[str, str], DeploymentState] | None:
    key = index_key(body)
    return {key: DeploymentState.from_body(body)} if key else None


@kopf.index("v1", "services", labels=_OURS)
async def tenant_services(body: kopf.Body, **_: Any) -> dict[tuple[str, str], ServiceState] | None:
    key = index_key(body)
    return {key: ServiceState.from_body(body)} if key else None

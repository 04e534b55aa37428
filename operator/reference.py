"""docs/crd-reference.md, generated from the CRD's schema so that it cannot drift.

``python -m mtdicom_operator.reference > docs/crd-reference.md``; a test compares the file
with this output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from mtdicom_operator.crd import (
    API_VERSION,
    CRD_NAME,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SPEC_CEL_RULES,
    build_crd,
    server_schema,
    spec_schema,
    status_schema,
)

INTRO = f"""# MultitenantDicomServer reference

`{API_VERSION}`, kind `{KIND}` (plural `{PLURAL}`, short name `{SHORT_NAMES[0]}`), namespaced.
CustomResourceDefinition `{CRD_NAME}`: `crds/mtdicom.io_multitenantdicomservers.yaml`.

The spec mirrors the `MultitenantDicom` plugin's configuration, so an `orthanc.json` translates
key by key: `DicomModalities` → `spec.modalities`, the `DicomAlwaysAllow*`/`Dicom*` options →
`spec.dicom`, `MultitenantDicom.Servers[]` → `spec.servers[]` (`AET` → `aet`, `Port` → `port`,
`Labels` → `labels`, `LabelsConstraint` → `labelsConstraint`, `LabelsStoreLevels` →
`labelsStoreLevels`), plus this project's per-server extensions and the Kubernetes settings.
The operator renders each server's tenant-server configuration
(docs/tenant-server-contract.md) into a ConfigMap; Orthanc's credentials stay in the Secret.

This page is generated from the schema (`python -m mtdicom_operator.reference`). Defaults are
applied by the API server, and again by the operator, which also re-checks every validation
(an API server without CEL, or `kubectl apply --validate=false`, would let a bad spec through).
Minimal example: [examples/hello-tenants.yaml](../examples/hello-tenants.yaml); every field:
[examples/full-options.yaml](../examples/full-options.yaml).
"""

CROSS_FIELD = """## Cross-field rules (CEL `x-kubernetes-validations`)

Checked by the API server (Kubernetes 1.25 and later) when the resource is written, and by the
operator before it touches anything (an invalid spec is reported as `Degraded=True`,
reason `InvalidSpec`, with a Warning Event, and not retried until the spec changes).

| where | rule | message |
|---|---|---|
"""

STATUS = """## Status

Written by the operator only (status subresource). `kubectl get mtds` shows `SERVERS` (ready
servers out of all), `READY` (the Ready condition) and `AGE`; `-o wide` adds the reason.

| condition | True when | reasons |
|---|---|---|
| `Ready` | every server's Deployment runs the current configuration with all replicas ready, for the current `metadata.generation` | `AllServersReady`; False: `RollingOut`, `Reconciling`, `ReconcileFailed`, `DeploymentFailed`, `InvalidSpec` |
| `Progressing` | pods are rolling out, or the operator is retrying after an API error | `RollingOut`, `Reconciling`, `Retrying`; False: `Complete`, `DeploymentFailed`, `InvalidSpec` |
| `Degraded` | the spec is invalid, the API refused a change, or a Deployment cannot progress (`ProgressDeadlineExceeded`, `ReplicaFailure`) | `InvalidSpec`, `ReconcileFailed`, `DeploymentFailed`; False: `AsExpected` |
| `Reconciling` | as `Progressing` (the kstatus convention, read by Flux) | as `Progressing` |
| `Stalled` | `Degraded` and not retried: an invalid spec or a Deployment that cannot progress (kstatus; Flux fails its health check at once) | `InvalidSpec`, `DeploymentFailed`; False: `AsExpected` |

Every condition carries `observedGeneration`, `lastTransitionTime` (kept while the status is
unchanged), `reason` and `message`. `status.observedGeneration` is the generation the operator
last applied, or judged invalid.
"""


def _type(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = str(schema.get("type", ""))
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'])}"
    return kind


def _range(low: Any, high: Any, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low} to {high}{unit}"
    return f"at least {low}{unit}" if low is not None else f"at most {high}{unit}"


def _validation(schema: dict[str, Any], required: bool) -> str:
    parts = ["**required**"] if required else []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        parts.append(_range(schema.get("minimum"), schema.get("maximum"), ""))
    if "minLength" in schema or "maxLength" in schema:
        parts.append(_range(schema.get("minLength"), schema.get("maxLength"), " characters"))
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern']}`")
    if "minItems" in schema or "maxItems" in schema:
        parts.append(_range(schema.get("minItems"), schema.get("maxItems"), " items"))
    if schema.get("x-kubernetes-list-type") == "set":
        parts.append("no duplicates")
    if "maxProperties" in schema:
        parts.append(f"at most {schema['maxProperties']} entries")
    items = schema.get("items")
    if isinstance(items, dict) and "enum" in items:
        parts.append("items one of " + ", ".join(f"`{v}`" for v in items["enum"]))
    if isinstance(items, dict) and "pattern" in items:
        parts.append(f"items match `{items['pattern']}`")
    for rule in schema.get("x-kubernetes-validations", []):
        parts.append(f"CEL: {rule['message']}")
    return "; ".join(parts).replace("|", "\\|")


def fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(path, schema, required) for every documented field, depth first."""
    required = set(schema.get("required", []))
    for key, sub in schema.get("properties", {}).items():
        sub_path = f"{path}.{key}"
        yield sub_path, sub, key in required
        if sub.get("type") == "object" and "properties" in sub:
            yield from fields(sub, sub_path)
        elif isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
            yield from fields(sub["items"], f"{sub_path}[]")
        elif (
            isinstance(sub.get("additionalProperties"), dict) and "properties" in sub["additionalProperties"]
        ):
            yield from fields(sub["additionalProperties"], f"{sub_path}.<name>")


def _table(schema: dict[str, Any], path: str) -> str:
    rows = ["| field | type | default | validation | description |", "|---|---|---|---|---|"]
    for field_path, sub, required in fields(schema, path):
        default = f"`{json.dumps(sub['default'])}`" if "default" in sub else ""
        description = str(sub.get("description", "")).replace("|", "\\|")
        rows.append(
            f"| `{field_path}` | {_type(sub)} | {default} | {_validation(sub, required)} | {description} |"
        )
    return "\n".join(rows) + "\n"


def render() -> str:
    spec = spec_schema()
    top = {**spec, "properties": {k: v for k, v in spec["properties"].items() if k != "servers"}}
    servers = spec["properties"]["servers"]
    columns = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    parts = [
        INTRO,
        "## spec\n",
        _table(top, "spec"),
        "## spec.servers[]\n",
        f"`spec.servers`: {_validation(servers, True)}. One ConfigMap, Deployment and Service per "
        "entry, named `<resource>-<aet in lower case>` (with a short hash when the AET has "
        "characters a Kubernetes name cannot hold).\n",
        _table(server_schema(), "spec.servers[]"),
        CROSS_FIELD
        + "\n".join(
            f"| `{where}` | `{rule['rule'].replace('|', chr(92) + '|')}` | {rule['message']} |"
            for where, rule in [("spec", r) for r in SPEC_CEL_RULES]
            + [("spec.servers[]", r) for r in server_schema().get("x-kubernetes-validations", [])]
            + [
                (path, rule)
                for path, sub, _ in fields(spec, "spec")
                if sub is not servers
                for rule in sub.get("x-kubernetes-validations", [])
            ]
        )
        + "\n",
        STATUS,
        _table(status_schema(), "status"),
        "Printer columns: " + ", ".join(f"`{c['name']}` (`{c['jsonPath']}`)" for c in columns) + ".\n",
    ]
    return "\n".join(parts)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()

"""The operator settings the chart passes are exactly those operator/settings.py reads, with its
defaults, and they arrive intact (numbers, booleans, the image)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mtdicom_operator import settings as operator_settings

from tests.chart.helpers import Object, chart, manifests, one, value_set


class RecordingEnv(dict[str, str]):
    """A mapping that remembers which variables the operator asked for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def operator_env(values: Object) -> dict[str, str]:
    (container,) = one(manifests(values), "Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def load(values: Object) -> tuple[operator_settings.OperatorSettings, RecordingEnv]:
    env = RecordingEnv(operator_env(values))
    return operator_settings.load(env), env


def test_chart_passes_every_setting_the_operator_reads_and_nothing_else() -> None:
    _, env = load({})
    ours = {name for name in env if name.startswith(operator_settings.PREFIX)}
    assert ours == env.asked


def test_chart_defaults_are_the_operator_defaults() -> None:
    loaded, _ = load({})
    assert loaded == operator_settings.OperatorSettings()
    chart_settings = chart().values["operator"]["settings"]
    assert (
        len(chart_settings) == len(dataclasses.fields(operator_settings.OperatorSettings)) - 1
    )  # not the image


def test_custom_settings_arrive_intact() -> None:
    custom = {
        "statusInterval": 0.5,
        "statusInitialDelay": 0,
        "requestTimeout": 12.5,
        "watchServerTimeout": 1000000,
        "watchClientTimeout": 1000010,
        "maxWorkers": 4,
        "backoffBase": 1.5,
        "backoffMax": 60,
        "repairDrift": False,
    }
    loaded, _ = load({"operator": {"settings": custom}})
    expected = dict(custom)
    assert {
        "statusInterval": loaded.status_interval,
        "statusInitialDelay": loaded.status_initial_delay,
        "requestTimeout": loaded.request_timeout,
        "watchServerTimeout": loaded.watch_server_timeout,
        "watchClientTimeout": loaded.watch_client_timeout,
        "maxWorkers": loaded.max_workers,
        "backoffBase": loaded.backoff_base,
        "backoffMax": loaded.backoff_max,
        "repairDrift": loaded.repair_drift,
    } == expected


def test_tenant_default_image_is_the_operator_image() -> None:
    values = value_set("cluster-wide")
    loaded, _ = load(values)
    assert loaded.default_image == f"{values['image']['repository']}@{values['image']['digest']}"
    loaded, _ = load({"image": {"tag": "0.2.0"}})
    assert loaded.default_image == "ghcr.io/mtdicom/multitenant-dicom:0.2.0"

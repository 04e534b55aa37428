"""Prometheus metrics for associations, DICOM operations and the Orthanc calls behind them.

Each server process owns one registry (tests run several servers in one process).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.associations_open = Gauge(
            "tenant_associations_open", "Associations open now", ["tenant"], registry=self.registry
        )
        self.associations_total = Counter(
            "tenant_associations", "Associations accepted", ["tenant"], registry=self.registry
        )
        self.associations_rejected = Counter(
            "tenant_associations_rejected", "Associations rejected", ["tenant"], registry=self.registry
        )
        self.tls_failures = Counter(
            "tenant_tls_handshake_failures",
            "TLS handshakes that failed (no or untrusted client certificate, old protocol, not TLS)",
            ["tenant"],
            registry=self.registry,
        )
        self.operations = Counter(
            "tenant_operations",
            "DICOM operations by type and outcome",
            ["tenant", "operation", "outcome"],
            registry=self.registry,
        )
        self.operation_seconds = Histogram(
            "tenant_operation_seconds",
            "DICOM operation latency",
            ["tenant", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.suboperations = Counter(
            "tenant_retrieve_suboperations",
            "C-STORE sub-operations of C-MOVE and C-GET, as their final responses count them",
            ["tenant", "operation", "result"],
            registry=self.registry,
        )
        self.orthanc_seconds = Histogram(
            "tenant_orthanc_request_seconds",
            "Orthanc REST latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.orthanc_errors = Counter(
            "tenant_orthanc_errors", "Orthanc REST calls that failed", ["route"], registry=self.registry
        )

    def track_open_associations(self, tenant: str, count: Callable[[], int]) -> None:
        self.associations_open.labels(tenant).set_function(count)

    def association_opened(self, tenant: str) -> None:
        self.associations_total.labels(tenant).inc()

    def association_rejected(self, tenant: str) -> None:
        self.associations_rejected.labels(tenant).inc()

    def tls_failure(self, tenant: str) -> None:
        self.tls_failures.labels(tenant).inc()

    def operation(self, tenant: str, operation: str, outcome: str, seconds: float) -> None:
        self.operations.labels(tenant, operation, outcome).inc()
        if outcome != "refused":
            self.operation_seconds.labels(tenant, operation).observe(seconds)

    def retrieve_suboperations(self, tenant: str, operation: str, counts: dict[str, int]) -> None:
        """``counts``: ``completed``, ``failed``, ``warning`` (those the final response carries)."""
        for result, count in counts.items():
            self.suboperations.labels(tenant, operation, result).inc(count)

    def orthanc_call(self, route: str, seconds: float, failed: bool) -> None:
        self.orthanc_seconds.labels(route).observe(seconds)
        if failed:
            self.orthanc_errors.labels(route).inc()

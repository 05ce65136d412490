"""Prometheus metrics of the operator (prometheus-client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
RESTORES = Counter("pgsr_restores_total", "Finished restores by result",
                   ["result", "reason"], registry=REGISTRY)
PHASE_SECONDS = Histogram("pgsr_phase_duration_seconds", "Duration of each restore phase",
                          ["phase"], registry=REGISTRY,
                          buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400))
ACTIVE = Gauge("pgsr_active_restores", "Restores currently running (holding a slot)",
               registry=REGISTRY)
QUEUED = Gauge("pgsr_queued_restores", "Restores waiting for a slot", registry=REGISTRY)
AWS_ERRORS = Counter("pgsr_aws_call_errors_total", "Failed AWS API calls",
                     ["service", "operation", "code"], registry=REGISTRY)


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)


def observe_event(event: dict) -> None:
    """Feed engine events into the metrics."""
    kind = event.get("event")
    if kind in ("phase_finished", "phase_failed") and event.get("seconds") is not None:
        PHASE_SECONDS.labels(event["phase"]).observe(float(event["seconds"]))
    if kind == "phase_failed" and event.get("reason") == "AwsError":
        code = str(event.get("message", "")).split(":", 1)[0]
        AWS_ERRORS.labels("aws", event.get("phase", ""), code).inc()

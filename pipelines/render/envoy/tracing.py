"""OpenTelemetry tracing of the client connection manager, to the collector cluster."""

from __future__ import annotations

from pipelines.config import names
from pipelines.config.model import EnvoyTracing, Placement
from pipelines.config.names import envoy_name
from pipelines.render.envoy.proto import Json, _percent, _typed

OTEL_CLUSTER = "opentelemetry_collector"

DEFAULT_SAMPLING_RATE = 0.01  # the schema's envoy.tracing.samplingRate default (a test holds them equal)


def tracing_settings(p: Placement) -> EnvoyTracing | None:
    """Envoy's tracing as rendered: with the in-namespace stack, to its collector (at the
    declared sampling rate, else the schema's default of 1 %)."""
    tr = p.envoy.tracing
    if p.monitoring.tracing.enabled:
        rate = tr.sampling_rate if tr is not None else DEFAULT_SAMPLING_RATE
        return EnvoyTracing(sampling_rate=rate, collector=names.otel_collector_grpc(p))
    return tr


def _tracing(p: Placement) -> Json:
    tr = tracing_settings(p)
    assert tr is not None
    return {
        "random_sampling": _percent(round(tr.sampling_rate * 100, 6)),
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": _typed(
                "config.trace.v3.OpenTelemetryConfig",
                grpc_service={"envoy_grpc": {"cluster_name": OTEL_CLUSTER}, "timeout": "1s"},
                service_name=envoy_name(p),
            ),
        },
    }

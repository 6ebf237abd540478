"""Telemetry captured in memory: the spans every exporter would get, and the metrics.

The process-wide tracer provider is set once (OpenTelemetry allows one per process) with the
app's `SpanHygiene` first and an in-memory exporter after it, as `shared.monitoring.azure_monitor`
puts the Azure Monitor exporter after it. Each capture starts empty, turns azure-core's
OpenTelemetry tracing on (as the distro does) and gives `shared.telemetry` a fresh meter with an
in-memory reader; both are undone at the end, so other tests measure nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from azure.core.settings import settings as azure_settings
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.monitoring.spans import SpanHygiene

_exporter = InMemorySpanExporter()
_provider: TracerProvider | None = None


def _global_provider() -> TracerProvider:
    global _provider
    if _provider is None:
        provider = TracerProvider()
        provider.add_span_processor(SpanHygiene())
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider, "another tracer provider was set first"
        _provider = provider
    return _provider


@dataclass
class Capture:
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(_exporter.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The data points of metric `name`: (attributes, the point) pairs."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(
                            (dict(point.attributes or {}), point) for point in metric.data.data_points
                        )
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of a counter's points (or of a histogram's sums) whose attributes include these."""
        found = 0.0
        for attrs, point in self.points(name):
            if all(attrs.get(key) == value for key, value in attributes.items()):
                found += point.value if hasattr(point, "value") else point.sum
        return found


@contextmanager
def capturing() -> Iterator[Capture]:
    provider = _global_provider()
    _exporter.clear()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    previous = azure_settings.tracing_implementation()
    azure_settings.tracing_implementation = "opentelemetry"
    telemetry.use(provider, meter_provider)
    try:
        yield Capture(reader)
    finally:
        telemetry.stop()
        azure_settings.tracing_implementation = previous
        meter_provider.shutdown()

"""The app's metrics and its own spans, through the OpenTelemetry API, defined once here.

Nothing is measured until a tracer and a meter are given to `use` (`shared.monitoring.start` does
so on the first invocation when APPLICATIONINSIGHTS_CONNECTION_STRING is set; tests pass in-memory
providers): until then every function below returns at once, and the OpenTelemetry packages are
not even imported, so a worker without telemetry pays nothing and importing the app stays cheap.

The metric names are a contract (alerts and the workbook are built on them, docs/telemetry.md
lists them); their attributes are small closed sets (ticket type, outcome, status class), never
an id, a URL or a message, so no series can carry a secret and their number stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider
    from opentelemetry.metrics import _Gauge as Gauge
    from opentelemetry.trace import Span, Tracer, TracerProvider

SCOPE = "m365-servicenow-connector"
TENANT_ATTRIBUTE = "connector.tenant_id"
INVOCATION_ATTRIBUTE = "faas.invocation_id"  # the request id every answer carries (X-Request-Id)
PEER_ATTRIBUTE = "peer.service"


@dataclass(frozen=True)
class _Instruments:
    tickets_created: Counter
    ticket_create_duration: Histogram
    servicenow_responses: Counter
    sync_runs: Counter
    sync_duration: Histogram
    sync_records_changed: Counter
    sync_lag: Histogram
    connections: Gauge
    refresh_tokens_expiring: Gauge

    @classmethod
    def on(cls, meter: Meter) -> _Instruments:
        return cls(
            tickets_created=meter.create_counter(
                "connector.tickets.created", unit="{ticket}", description="Ticket create requests by outcome"
            ),
            ticket_create_duration=meter.create_histogram(
                "connector.ticket.create.duration", unit="ms", description="Time to answer a ticket create"
            ),
            servicenow_responses=meter.create_counter(
                "connector.servicenow.responses", unit="{response}", description="ServiceNow answers by class"
            ),
            sync_runs=meter.create_counter("connector.sync.runs", unit="{run}", description="Tenant syncs"),
            sync_duration=meter.create_histogram(
                "connector.sync.duration", unit="s", description="Time of one tenant's sync"
            ),
            sync_records_changed=meter.create_counter(
                "connector.sync.records_changed", unit="{record}", description="Ticket states the sync wrote"
            ),
            sync_lag=meter.create_histogram(
                "connector.sync.lag",
                unit="s",
                description="From a record's sys_updated_on to the sync seeing it",
            ),
            connections=meter.create_gauge(
                "connector.connections", unit="{connection}", description="Connections the timer listed"
            ),
            refresh_tokens_expiring=meter.create_gauge(
                "connector.refresh_tokens.expiring",
                unit="{connection}",
                description="Connected tenants whose ServiceNow refresh token expires within 14 days",
            ),
        )


_tracer: Tracer | None = None
_instruments: _Instruments | None = None


def use(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    """Measure from now on with these providers (the distro's global ones, or a test's)."""
    global _tracer, _instruments
    _tracer = tracer_provider.get_tracer(SCOPE)
    _instruments = _Instruments.on(meter_provider.get_meter(SCOPE))


def stop() -> None:
    """Measure nothing any more (tests)."""
    global _tracer, _instruments
    _tracer, _instruments = None, None


def tracer() -> Tracer | None:
    """The tracer of our own spans; None while telemetry is off."""
    return _tracer


@contextmanager
def client_span(name: str, peer: str, **attributes: str) -> Iterator[Span | None]:
    """A CLIENT span around an outgoing call that no instrumentation sees (msal's token requests run
    in a thread, under `requests`); None and no cost while telemetry is off. An exception ends the
    span as an error, with its type only: messages are ours to log, not to export."""
    current = _tracer
    if current is None:
        yield None
        return
    from opentelemetry.trace import SpanKind, StatusCode

    with current.start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes={PEER_ATTRIBUTE: peer, **attributes},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(StatusCode.ERROR)
            raise


def status_class(status: int | None) -> str:
    """`2xx`, `3xx`, `4xx`, `5xx`, and `429` on its own (throttling is watched apart); `error` when
    no answer came."""
    if status is None:
        return "error"
    return "429" if status == 429 else f"{status // 100}xx"


def servicenow_response(status: int | None) -> None:
    if _instruments is not None:
        _instruments.servicenow_responses.add(1, {"status_class": status_class(status)})


def ticket_create(ticket_type: str, outcome: str, seconds: float) -> None:
    """One create request's end: `outcome` is `created`, `existing`, `creating` or an error code."""
    if _instruments is not None:
        attributes = {"type": ticket_type, "outcome": outcome}
        _instruments.tickets_created.add(1, attributes)
        _instruments.ticket_create_duration.record(seconds * 1000.0, attributes)


def sync_run(outcome: str, seconds: float, changed: int) -> None:
    """One tenant's sync: `outcome` is `synced`, `skipped` or `failed`."""
    if _instruments is not None:
        _instruments.sync_runs.add(1, {"outcome": outcome})
        _instruments.sync_duration.record(seconds, {"outcome": outcome})
        if changed:
            _instruments.sync_records_changed.add(changed)


def sync_lag(seconds: float) -> None:
    if _instruments is not None:
        _instruments.sync_lag.record(max(seconds, 0.0))


def connections_listed(status: str, count: int, expiring: int) -> None:
    """What the timer's listing found: connections of `status`, and how many of them hold a refresh
    token expiring within 14 days (`shared.records.REFRESH_TOKEN_WARNING`)."""
    if _instruments is not None:
        _instruments.connections.set(count, {"status": status})
        _instruments.refresh_tokens_expiring.set(expiring)


def connections_counted(status: str, count: int) -> None:
    """Connections of a status the timer does not list (counted apart, see `sync_fanout`)."""
    if _instruments is not None:
        _instruments.connections.set(count, {"status": status})


def enabled() -> bool:
    return _instruments is not None

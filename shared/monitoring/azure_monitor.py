"""Application Insights through the Azure Monitor OpenTelemetry distro, started once per worker
on its first invocation (`bootstrap.get_container`), and only when APPLICATIONINSIGHTS_CONNECTION_
STRING is set. The distro's import alone takes about half a second, which is why it is not at
the app's import (the Flex Consumption host gives the app 30 s to initialise; every cold start
pays for what import does).

The distro sets the global tracer and meter providers, exports traces and metrics to
Application Insights, and turns on azure-core's OpenTelemetry tracing, so every Key Vault, Table
and Queue call is a span. Our `SpanHygiene` is its first span processor (see `spans`). httpx,
requests and urllib3 are not instrumented by the distro: our httpx clients make their own spans
(`http`), and msal's token requests under `requests` get one from `GraphTokens`.

Logs are not exported by the distro: the worker already hands every record to the host, which
sends it to Application Insights (with its invocation id), so a second copy would only duplicate
it. What reaches the host is the record as our record factory scrubbed it
(`shared.observability`); the distro's handler would read the exception itself, unscrubbed.

The Functions host passes each invocation's trace context to the worker, which makes it the
current OpenTelemetry context when PYTHON_ENABLE_OPENTELEMETRY is true, so our spans are
children of the host's request span (docs/telemetry.md: the app settings).
"""

from __future__ import annotations

import logging

from shared import telemetry
from shared.errors import Misconfigured
from shared.settings import get_settings

logger = logging.getLogger(__name__)

# Instrumentations of the distro that would duplicate ours or see nothing of this app.
_NOT_INSTRUMENTED = ("httpx", "requests", "urllib", "urllib3", "django", "fastapi", "flask", "psycopg2")

_decided = False


def start_once() -> bool:
    """Start the distro on the first call when the connection string is set; True when telemetry
    is on. Settings that do not validate leave the decision to a later call (the app answers 503
    until they do); a distro that fails to start is logged, and the app runs on without it."""
    global _decided
    if _decided:
        return telemetry.enabled()
    try:
        connection_string = get_settings().applicationinsights_connection_string
    except Misconfigured:
        return False
    _decided = True
    if connection_string is None or not connection_string.get_secret_value().strip():
        return False
    try:
        _configure(connection_string.get_secret_value().strip())
    except Exception as error:  # telemetry must never take the app down
        logger.warning("Application Insights telemetry could not start: %s", type(error).__name__)
        return False
    logger.info("Application Insights telemetry started")
    return True


def _configure(connection_string: str) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import metrics, trace

    from shared.monitoring.spans import SpanHygiene

    configure_azure_monitor(
        connection_string=connection_string,
        span_processors=[SpanHygiene()],
        disable_logging=True,  # logs keep their way through the host (module docstring)
        instrumentation_options={name: {"enabled": False} for name in _NOT_INSTRUMENTED},
    )
    telemetry.use(trace.get_tracer_provider(), metrics.get_meter_provider())

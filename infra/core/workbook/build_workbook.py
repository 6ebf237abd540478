"""Write operations.workbook.json, the operations workbook that workbook.bicep deploys.

Run `python3 infra/core/workbook/build_workbook.py` after changing a chart here or a query in
../alerts/: the workbook's tenant tables are the alert queries themselves, so a tenant an alert
names is the tenant the workbook lists. tests/infra/test_alerts.py fails when the JSON is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ALERTS = HERE.parent / "alerts"
OUTPUT = HERE / "operations.workbook.json"
SCHEMA = "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json"
HOUR_MS = 3_600_000


def _text(markdown: str) -> dict[str, Any]:
    return {"type": 1, "content": {"json": markdown}}


def _query(title: str, kql: str, visualization: str = "timechart", hours: int = 24) -> dict[str, Any]:
    return {
        "type": 3,
        "content": {
            "version": "KqlItem/1.0",
            "query": kql,
            "size": 0,
            "title": title,
            "timeContext": {"durationMs": hours * HOUR_MS},
            "queryType": 0,
            "resourceType": "microsoft.insights/components",
            "visualization": visualization,
        },
    }


def _metric(name: str, summarize: str, by: str = "bin(timestamp, 1h)") -> str:
    return f'customMetrics\n| where name == "{name}"\n| summarize {summarize} by {by}\n| render timechart'


def _alert_query(file: str) -> str:
    """An alert's query without its comment lines, as a table of the tenants it names."""
    lines = (ALERTS / file).read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("//"))


def _items() -> list[dict[str, Any]]:
    return [*_tenants(), *_tickets_and_servicenow(), *_sync(), *_connections_and_host()]


def _tenants() -> list[dict[str, Any]]:
    return [
        _text(
            "# ServiceNow connector: operations\n"
            "What each chart means and what to do about it: `docs/operations.md` in the repository. "
            "Metrics come from the app's OpenTelemetry instruments (`customMetrics`, `shared/telemetry.py`); "
            "failures from the Functions host (`requests`, `exceptions`, `traces`)."
        ),
        _text("## Tenants that need someone"),
        _query(
            "Waiting a day or more for an admin to re-authorize (alert: reauthorization stuck)",
            _alert_query("reauthorization-stuck.kql"),
            "table",
            hours=48,
        ),
        _query(
            "Syncs failing for a day without a success (alert: sync failing)",
            _alert_query("sync-failing.kql"),
            "table",
            hours=24,
        ),
    ]


def _tickets_and_servicenow() -> list[dict[str, Any]]:
    return [
        _text("## Tickets"),
        _query(
            "Ticket creates by type and outcome (connector.tickets.created)",
            _metric(
                "connector.tickets.created",
                "tickets = sum(value)",
                'bin(timestamp, 1h), series = strcat(tostring(customDimensions.type), " / ", '
                "tostring(customDimensions.outcome))",
            ),
        ),
        _query(
            "Time to answer a ticket create, ms (connector.ticket.create.duration)",
            _metric(
                "connector.ticket.create.duration",
                "average_ms = sum(valueSum) / sum(valueCount), worst_ms = max(valueMax)",
            ),
        ),
        _text("## ServiceNow"),
        _query(
            "ServiceNow answers by status class; `error` is no answer (connector.servicenow.responses)",
            _metric(
                "connector.servicenow.responses",
                "answers = sum(value)",
                "bin(timestamp, 15m), status_class = tostring(customDimensions.status_class)",
            ),
        ),
    ]


def _sync() -> list[dict[str, Any]]:
    return [
        _text("## Sync"),
        _query(
            "Tenant syncs by outcome: synced, skipped, failed (connector.sync.runs)",
            _metric(
                "connector.sync.runs",
                "runs = sum(value)",
                "bin(timestamp, 1h), outcome = tostring(customDimensions.outcome)",
            ),
        ),
        _query(
            "Time of one tenant's sync, s (connector.sync.duration)",
            _metric(
                "connector.sync.duration",
                "average_s = sum(valueSum) / sum(valueCount), worst_s = max(valueMax)",
            ),
        ),
        _query(
            "Ticket states the sync wrote (connector.sync.records_changed)",
            _metric("connector.sync.records_changed", "changed = sum(value)"),
        ),
        _query(
            "From a record's change in ServiceNow to the sync seeing it, s (connector.sync.lag)",
            _metric(
                "connector.sync.lag", "average_s = sum(valueSum) / sum(valueCount), worst_s = max(valueMax)"
            ),
            hours=72,
        ),
        _query(
            "Sync failures logged, by kind (shared/services/sync_failures.py)",
            'traces\n| where message startswith "Sync stopped" or message startswith "Sync failed"'
            ' or message startswith "Could not queue a sync"\n'
            '| extend kind = case(message has "grant is dead", "re-authorization required", '
            'message has "asked us to wait", "deferred by ServiceNow", message has "not retried", '
            '"refused by ServiceNow", message has "will be retried", "retried", '
            'message startswith "Could not queue", "not queued", "other")\n'
            "| summarize lines = count() by bin(timestamp, 1h), kind\n| render timechart",
        ),
    ]


def _connections_and_host() -> list[dict[str, Any]]:
    return [
        _text("## Connections"),
        _query(
            "Connected tenants the timer listed (connector.connections)",
            _metric("connector.connections", "connections = max(value)"),
            hours=168,
        ),
        _query(
            "Connected tenants whose refresh token expires within 14 days (connector.refresh_tokens.expiring)",
            _metric("connector.refresh_tokens.expiring", "expiring = max(value)"),
            hours=168,
        ),
        _text("## Host"),
        _query(
            "Messages moved to a poison queue, by queue",
            _alert_query("poison-messages.kql").replace("by queue", "by queue, bin(timestamp, 1h)"),
            "barchart",
            hours=168,
        ),
        _query(
            "Failed invocations by function",
            _alert_query("function-failures.kql").replace(
                "by operation_Name", "by bin(timestamp, 1h), operation_Name\n| render timechart"
            ),
        ),
        _query(
            "Most frequent exceptions",
            "exceptions\n| summarize occurrences = count(), last_seen = max(timestamp) by type, "
            "outerMessage = substring(outerMessage, 0, 200)\n| top 20 by occurrences",
            "table",
        ),
    ]


def build() -> dict[str, Any]:
    return {"version": "Notebook/1.0", "items": _items(), "fallbackResourceIds": [], "$schema": SCHEMA}


def main() -> None:
    OUTPUT.write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

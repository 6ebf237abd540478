"""The alerts and the workbook: wired from main.bicep, each rule backed by a query file, and every
query reading names the app really writes (metric names, status classes, log lines, queues)."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from shared import telemetry
from shared.models import SYNC_QUEUE, TICKET_CREATE_QUEUE

from .bicep import Expr
from .checkov_runner import INFRA_DIR, REPO_ROOT, run_checkov
from .policies import Infra

Mutate = Callable[[str, str, str], Path]
ALERT_QUERIES = INFRA_DIR / "core" / "alerts"
# Query file -> what the alert is for; each one is explained in docs/operations.md.
REQUIRED_ALERTS = {
    "poison-messages.kql": "queue messages the host gave up on",
    "reauthorization-stuck.kql": "tenants waiting a day for re-authorization",
    "sync-failing.kql": "tenants whose syncs have failed for a day",
    "sync-timer-silent.kql": "the sync timer stopped",
    "servicenow-5xx.kql": "ServiceNow failing",
    "servicenow-429.kql": "ServiceNow throttling us",
    "function-failures.kql": "function invocations failing",
}
# Log lines (or their stable beginnings) the queries look for, each written by the app.
LOG_LINES = [
    "Synced:",
    "Sync failed",
    "Sync stopped",
    "ServiceNow grant is no longer valid",
    "waiting for an admin to re-authorize",
    "Refreshed the ServiceNow access token",
    "Queued a",
    "connected tenant",
    "Could not queue a sync",
]
# The Functions host's line when it moves a message to the poison queue (azure-webjobs-sdk).
HOST_POISON_LINE = "Message has reached MaxDequeueCount of 5. Moving message to queue '{queue}-poison'."


def _alert_modules(infra: Infra) -> dict[str, dict[str, object]]:
    alerts = infra.files["core/alerts.bicep"]
    return {
        symbol: module.body.get("params", {})
        for symbol, module in alerts.modules.items()
        if module.path == "alerts/log-alert.bicep"
    }


def _query_file(params: dict[str, object]) -> str:
    query = params.get("query")
    m = re.fullmatch(r"loadTextContent\('alerts/([^']+)'\)", query.text if isinstance(query, Expr) else "")
    assert m, f"alert query must be loaded from core/alerts/: {query!r}"
    return m.group(1)


def _queries() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(ALERT_QUERIES.glob("*.kql"))}


def _workbook_builder() -> ModuleType:
    path = INFRA_DIR / "core" / "workbook" / "build_workbook.py"
    spec = importlib.util.spec_from_file_location("build_workbook", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_deploys_alerts_and_workbook_on_app_insights(infra: Infra) -> None:
    main = infra.files["main.bicep"]
    for symbol, path in (("alerts", "core/alerts.bicep"), ("workbook", "core/workbook.bicep")):
        module = main.modules[symbol]
        assert module.path == path
        source = module.body["params"]["applicationInsightsId"]
        assert isinstance(source, Expr)
        assert source.text == "monitoring.outputs.applicationInsightsId"
    params = main.modules["alerts"].body["params"]
    assert params["alertEmail"] == Expr("alertEmail")
    assert params["existingActionGroupId"] == Expr("alertActionGroupId")


def test_every_alert_notifies_the_action_group(infra: Infra) -> None:
    alerts = infra.files["core/alerts.bicep"]
    [group] = [r for r in alerts.resources.values() if r.type == "Microsoft.Insights/actionGroups"]
    assert group.get("properties.enabled") is True
    assert "alertEmail" in group.get("properties.emailReceivers").text
    assert "actionGroup.id" in alerts.variables["actionGroupIds"].text
    for symbol, params in _alert_modules(infra).items():
        assert params["actionGroupIds"] == Expr("actionGroupIds"), symbol
        assert "docs/operations.md" in str(params["alertDescription"]), symbol
    rule = infra.files["core/alerts/log-alert.bicep"].resources["rule"]
    assert rule.get("properties.actions.actionGroups") == Expr("actionGroupIds")
    assert rule.get("properties.scopes") == [Expr("applicationInsightsId")]


def test_each_required_alert_has_its_rule_and_query(infra: Infra) -> None:
    used = [_query_file(params) for params in _alert_modules(infra).values()]
    assert sorted(used) == sorted(REQUIRED_ALERTS)
    assert set(_queries()) == set(REQUIRED_ALERTS)


def test_each_alert_is_explained_in_the_operations_guide(infra: Infra) -> None:
    guide = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for symbol, params in _alert_modules(infra).items():
        title = str(params["displayName"]).replace("\\'", "'")  # Bicep escapes a quote as \'
        assert f"### {title}\n" in guide, f"docs/operations.md does not explain {symbol}"


def test_queries_read_metrics_the_app_defines() -> None:
    defined = set(
        re.findall(r'"(connector\.[a-z_.]+)"', Path(telemetry.__file__).read_text(encoding="utf-8"))
    )
    workbook = (INFRA_DIR / "core" / "workbook" / "operations.workbook.json").read_text(encoding="utf-8")
    used = set(re.findall(r'\\?"(connector\.[a-z_.]+)\\?"', workbook + "".join(_queries().values())))
    assert used, "no metric is read"
    assert used <= defined, used - defined


def test_status_classes_are_the_ones_the_app_records() -> None:
    queries = _queries()
    assert '"429"' in queries["servicenow-429.kql"]
    assert telemetry.status_class(429) == "429"
    assert '"5xx"' in queries["servicenow-5xx.kql"]
    assert telemetry.status_class(503) == "5xx"
    assert '"error"' in queries["servicenow-5xx.kql"]
    assert telemetry.status_class(None) == "error"


def test_log_lines_the_queries_read_are_written_by_the_app() -> None:
    sources = "".join(p.read_text(encoding="utf-8") for p in (REPO_ROOT / "shared" / "services").glob("*.py"))
    queries = "".join(_queries().values())
    for line in LOG_LINES:
        assert line in sources, f"no service logs {line!r} any more"
    used = set(re.findall(r'(?:startswith|has) "([^"]+)"', queries)) - {"MaxDequeueCount", "-poison"}
    assert used <= set(LOG_LINES), used - set(LOG_LINES)


@pytest.mark.parametrize("queue", [SYNC_QUEUE, TICKET_CREATE_QUEUE])
def test_the_poison_query_names_the_queue(queue: str) -> None:
    line = HOST_POISON_LINE.format(queue=queue)
    query = _queries()["poison-messages.kql"]
    assert all(term in line for term in re.findall(r'message has "([^"]+)"', query))
    [pattern] = re.findall(r'extract\(@"([^"]+)", 1, message\)', query)
    match = re.search(pattern, line)
    assert match
    assert match.group(1) == f"{queue}-poison"


def test_the_workbook_is_built_from_the_current_queries() -> None:
    checked_in = json.loads(
        (INFRA_DIR / "core" / "workbook" / "operations.workbook.json").read_text(encoding="utf-8")
    )
    assert checked_in == _workbook_builder().build(), "run python3 infra/core/workbook/build_workbook.py"
    assert checked_in["version"] == "Notebook/1.0"
    assert all(item["type"] in (1, 3) for item in checked_in["items"])


def test_the_workbook_resource_loads_the_json(infra: Infra) -> None:
    [workbook] = infra.files["core/workbook.bicep"].resources_of_type("Microsoft.Insights/workbooks")
    assert workbook.get("properties.serializedData") == Expr(
        "loadTextContent('workbook/operations.workbook.json')"
    )
    assert workbook.get("properties.sourceId") == Expr("applicationInsightsId")


def test_policy_fails_when_an_alert_is_dropped(mutate: Mutate) -> None:
    alerts = (INFRA_DIR / "core" / "alerts.bicep").read_text(encoding="utf-8")
    block = alerts[alerts.index("module poisonMessages") : alerts.index("module reauthorizationStuck")]
    broken = Infra.load(mutate("core/alerts.bicep", block, ""))
    used = [_query_file(params) for params in _alert_modules(broken).values()]
    assert "poison-messages.kql" not in used


def test_checkov_fails_when_an_alert_rule_is_disabled(mutate: Mutate, tmp_path: Path) -> None:
    broken = mutate("core/alerts/log-alert.bicep", "    enabled: true\n", "    enabled: false\n")
    report = run_checkov(broken, home=tmp_path / "home")
    assert "CKV2_CONNECTOR_4" in report.failed_ids()


def test_checkov_fails_when_the_action_group_is_disabled(mutate: Mutate, tmp_path: Path) -> None:
    broken = mutate("core/alerts.bicep", "    enabled: true\n", "    enabled: false\n")
    report = run_checkov(broken, home=tmp_path / "home")
    assert "CKV2_CONNECTOR_5" in report.failed_ids()

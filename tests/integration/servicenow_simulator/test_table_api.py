"""Table API record conformance: create, read, update, delete, field rules.
Docstrings cite lines of ``cat -n /work/shared/reference/servicenow-wire-facts.md``."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from localdev.servicenow import RunningSimulator

DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
INCIDENT_URL = "/api/now/table/incident"


async def _create(api: httpx.AsyncClient, table: str = "incident", **fields: Any) -> dict[str, Any]:
    answer = await api.post(f"/api/now/table/{table}", json=fields)
    assert answer.status_code == 201, answer.text
    record: dict[str, Any] = answer.json()["result"]
    return record


async def test_post_creates_with_201_location_and_platform_fields(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    """facts L71, L109, L111, L112, L173: 201 + Location; strings; UTC dates; 32-hex sys_id; INC number."""
    answer = await api.post(
        INCIDENT_URL, json={"short_description": "Enable MFA", "impact": 2, "urgency": "2"}
    )
    assert answer.status_code == 201
    record = answer.json()["result"]
    assert answer.headers["Location"] == f"{sim.url}/api/now/table/incident/{record['sys_id']}"
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"])
    assert record["number"] == "INC0010001"
    assert all(isinstance(value, str) for key, value in record.items() if key != "opened_by")
    assert (record["impact"], record["urgency"], record["priority"]) == ("2", "2", "3")
    assert (record["state"], record["active"], record["sys_mod_count"]) == ("1", "true", "0")
    assert record["sys_class_name"] == "incident"
    assert record["due_date"] == ""
    for name in ("sys_created_on", "sys_updated_on", "opened_at"):
        assert DATETIME.fullmatch(record[name])


async def test_incident_defaults(api: httpx.AsyncClient) -> None:
    """facts L150, L154-160: a bare incident is New (1), impact/urgency 3 -> priority 5."""
    record = await _create(api, short_description="x")
    assert (record["state"], record["impact"], record["urgency"], record["priority"]) == ("1", "3", "3", "5")
    assert record["incident_state"] == "1"  # legacy mirror, facts L151


async def test_change_request_defaults_and_numbering(api: httpx.AsyncClient) -> None:
    """facts L166, L169, L173: new-model state -5, type normal, CHG + 7 digits, own counter."""
    first = await _create(api, "change_request", short_description="a")
    second = await _create(api, "change_request", short_description="b")
    incident = await _create(api, short_description="c")
    assert (first["number"], second["number"], incident["number"]) == (
        "CHG0030001",
        "CHG0030002",
        "INC0010001",
    )
    assert (first["state"], first["type"]) == ("-5", "normal")


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        ("1", "1", "1"),
        ("1", "2", "2"),
        ("1", "3", "3"),
        ("2", "1", "2"),
        ("2", "2", "3"),
        ("2", "3", "4"),
        ("3", "1", "3"),
        ("3", "2", "4"),
        ("3", "3", "5"),
    ],
)
async def test_priority_matrix(api: httpx.AsyncClient, impact: str, urgency: str, priority: str) -> None:
    """facts L154-163: priority is looked up server-side from impact x urgency; a sent priority is ignored."""
    record = await _create(api, impact=impact, urgency=urgency, priority="1" if priority != "1" else "5")
    assert record["priority"] == priority


async def test_priority_recomputed_on_update(api: httpx.AsyncClient) -> None:
    """facts L162-163: changing impact/urgency moves priority; PATCHing priority alone does nothing."""
    record = await _create(api)
    patched = (
        await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"impact": "1", "urgency": "1"})
    ).json()
    assert patched["result"]["priority"] == "1"
    again = (await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"priority": "5"})).json()["result"]
    assert again["priority"] == "1"
    assert again["sys_mod_count"] == "1"  # nothing changed, so nothing was written


async def test_read_only_and_unknown_fields_ignored(api: httpx.AsyncClient) -> None:
    """facts L71, L162, L173: number/sys_id/sys_* come from the platform; unknown fields are dropped."""
    record = await _create(
        api, number="INC9999999", sys_id="0" * 32, sys_created_on="2000-01-01 00:00:00", u_nonsense="x"
    )
    assert record["number"] == "INC0010001"
    assert record["sys_id"] != "0" * 32
    assert record["sys_created_on"] != "2000-01-01 00:00:00"
    assert "u_nonsense" not in record


async def test_post_array_only_first_record(api: httpx.AsyncClient) -> None:
    """facts L71: only one record per request; 'only the first record is processed'."""
    answer = await api.post(INCIDENT_URL, json=[{"short_description": "one"}, {"short_description": "two"}])
    assert answer.status_code == 201
    listing = (await api.get(INCIDENT_URL)).json()["result"]
    assert [row["short_description"] for row in listing] == ["one"]


async def test_get_by_sys_id_and_404_envelope(api: httpx.AsyncClient) -> None:
    """facts L70, L115, L119: GET /{sys_id} 200, unknown 404 'No Record found'."""
    record = await _create(api, short_description="find me")
    found = await api.get(f"{INCIDENT_URL}/{record['sys_id']}")
    assert found.status_code == 200
    assert found.json()["result"] == record
    missing = await api.get(f"{INCIDENT_URL}/{'f' * 32}")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "No Record found",
            "detail": "Record doesn't exist or ACL restricts the record retrieval",
        },
        "status": "failure",
    }


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_update_moves_sys_updated_on_and_mod_count(
    api: httpx.AsyncClient, client: httpx.AsyncClient, method: str
) -> None:
    """facts L72, L175: PATCH/PUT 200; sys_updated_on and sys_mod_count move on each change."""
    record = await _create(api, short_description="before")
    await client.post("/__sim/clock", json={"advance_seconds": 5})
    answer = await api.request(method, f"{INCIDENT_URL}/{record['sys_id']}", json={"state": "2"})
    assert answer.status_code == 200
    updated = answer.json()["result"]
    assert (updated["state"], updated["sys_mod_count"]) == ("2", "1")
    assert updated["sys_updated_on"] > record["sys_updated_on"]
    assert updated["sys_created_on"] == record["sys_created_on"]
    missing = await api.request(method, f"{INCIDENT_URL}/{'0' * 32}", json={"state": "2"})
    assert missing.status_code == 404


async def test_delete_is_204_empty(api: httpx.AsyncClient) -> None:
    """facts L73: DELETE 204 with an empty body; the record is gone afterwards."""
    record = await _create(api)
    answer = await api.delete(f"{INCIDENT_URL}/{record['sys_id']}")
    assert answer.status_code == 204
    assert answer.content == b""
    assert (await api.get(f"{INCIDENT_URL}/{record['sys_id']}")).status_code == 404


async def test_invalid_table(api: httpx.AsyncClient) -> None:
    """facts L120: 400 'Invalid table <name>' with a null detail."""
    answer = await api.get("/api/now/table/no_such_table")
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {"message": "Invalid table no_such_table", "detail": None},
        "status": "failure",
    }


async def test_unknown_api_path(api: httpx.AsyncClient) -> None:
    """facts L124: a URI that is no resource: 'Requested URI does not represent any resource'."""
    answer = await api.get("/api/now/nothing/here")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Requested URI does not represent any resource"


async def test_bad_json_body_is_400_envelope(api: httpx.AsyncClient) -> None:
    """facts L71, L115: a body the instance cannot read is a 400 in the error envelope."""
    answer = await api.post(INCIDENT_URL, content=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["status"] == "failure"


async def test_reference_fields(api: httpx.AsyncClient, sim: RunningSimulator) -> None:
    """facts L110: references are {link, value}; plain string with sysparm_exclude_reference_link."""
    record = await _create(api)
    opened_by = record["opened_by"]
    assert set(opened_by) == {"link", "value"}
    assert opened_by["link"] == f"{sim.url}/api/now/table/sys_user/{opened_by['value']}"
    plain = await api.get(
        f"{INCIDENT_URL}/{record['sys_id']}", params={"sysparm_exclude_reference_link": "true"}
    )
    assert plain.json()["result"]["opened_by"] == opened_by["value"]
    user = await api.get(f"/api/now/table/sys_user/{opened_by['value']}")
    assert user.status_code == 200


async def test_sysparm_fields_and_invalid_names(api: httpx.AsyncClient) -> None:
    """facts L82: comma list of fields; invalid names are ignored."""
    await _create(api, short_description="x")
    answer = await api.get(INCIDENT_URL, params={"sysparm_fields": "number,state,no_such_field"})
    assert answer.json()["result"] == [{"number": "INC0010001", "state": "1"}]


async def test_display_values(api: httpx.AsyncClient) -> None:
    """facts L85, L110: display_value=true gives labels; =all gives {display_value, value}."""
    record = await _create(api, impact="1", urgency="1")
    url = f"{INCIDENT_URL}/{record['sys_id']}"
    shown = (await api.get(url, params={"sysparm_display_value": "true"})).json()["result"]
    assert (shown["state"], shown["priority"]) == ("New", "1 - Critical")
    assert shown["opened_by"]["display_value"] == "System Administrator"
    both = (await api.get(url, params={"sysparm_display_value": "all"})).json()["result"]
    assert both["state"] == {"display_value": "New", "value": "1"}
    assert "display_value_internal" in both["sys_updated_on"]


async def test_state_labels_in_sys_choice(api: httpx.AsyncClient) -> None:
    """facts L150, L166, L171: state labels are read from sys_choice (element=state, name=table)."""
    answer = await api.get(
        "/api/now/table/sys_choice",
        params={"sysparm_query": "name=incident^element=state^language=en^ORDERBYsequence"},
    )
    rows = answer.json()["result"]
    assert [(row["value"], row["label"]) for row in rows] == [
        ("1", "New"),
        ("2", "In Progress"),
        ("3", "On Hold"),
        ("6", "Resolved"),
        ("7", "Closed"),
        ("8", "Canceled"),
    ]
    change = await api.get(
        "/api/now/table/sys_choice",
        params={"sysparm_query": "name=change_request^element=state^ORDERBYsequence"},
    )
    assert [row["value"] for row in change.json()["result"]] == ["-5", "-4", "-3", "-2", "-1", "0", "3", "4"]


async def test_correlation_id_truncated_to_100(api: httpx.AsyncClient) -> None:
    """facts L178: correlation_id/correlation_display hold at most 100 characters (truncated here)."""
    record = await _create(api, correlation_id="x" * 150, correlation_display="y" * 101)
    assert record["correlation_id"] == "x" * 100
    assert record["correlation_display"] == "y" * 100


async def test_journal_fields_read_back_empty(api: httpx.AsyncClient) -> None:
    """facts L113: work_notes and comments read back as ''."""
    record = await _create(api, work_notes="note", comments="comment")
    assert (record["work_notes"], record["comments"]) == ("", "")


async def test_closing_clears_active(api: httpx.AsyncClient) -> None:
    """facts L150: Closed (7) and Canceled (8) are the end states; the record turns inactive."""
    record = await _create(api)
    closed = (await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"state": "7"})).json()["result"]
    assert closed["active"] == "false"


async def test_versioned_routes_and_empty_results(api: httpx.AsyncClient) -> None:
    """facts L63: /api/now/v1|v2/table; a valid empty query is 404 in v1 and 200 {"result":[]} in v2."""
    v2 = await api.get("/api/now/v2/table/incident")
    assert (v2.status_code, v2.json()) == (200, {"result": []})
    plain = await api.get(INCIDENT_URL)
    assert (plain.status_code, plain.json()) == (200, {"result": []})
    v1 = await api.get("/api/now/v1/table/incident")
    assert v1.status_code == 404
    created = await api.post("/api/now/v2/table/incident", json={"short_description": "v2"})
    assert created.status_code == 201
    assert (await api.get("/api/now/v1/table/incident")).status_code == 200

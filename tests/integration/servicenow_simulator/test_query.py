"""Encoded query (sysparm_query) conformance over HTTP, one case per operator.
Docstrings cite lines of ``cat -n /work/shared/reference/servicenow-wire-facts.md``."""

from __future__ import annotations

import httpx
import pytest

from localdev.servicenow import RunningSimulator

# number -> fields; created in this order, so INC0010001..INC0010005.
ROWS = [
    {
        "short_description": "Enable MFA for admins",
        "state": "1",
        "impact": "1",
        "urgency": "1",
        "category": "Identity",
    },
    {
        "short_description": "Turn on audit log",
        "state": "2",
        "impact": "2",
        "urgency": "2",
        "category": "Data",
    },
    {"short_description": "Block legacy auth", "state": "6", "impact": "3", "urgency": "3", "category": ""},
    {
        "short_description": "enable mfa for users",
        "state": "7",
        "impact": "2",
        "urgency": "1",
        "category": "Identity",
    },
    {
        "short_description": "Patch servers",
        "state": "10",
        "impact": "3",
        "urgency": "1",
        "category": "Devices",
    },
]


@pytest.fixture
async def seeded(sim: RunningSimulator, api: httpx.AsyncClient) -> httpx.AsyncClient:
    for n, fields in enumerate(ROWS):
        await api.post("/api/now/table/incident", json={**fields, "correlation_id": f"ticket-{n + 1}"})
        await api.post("/__sim/clock", json={"advance_seconds": 60})  # distinct sys_created_on
    return api


async def _numbers(api: httpx.AsyncClient, query: str, **params: str) -> list[str]:
    answer = await api.get(
        "/api/now/table/incident", params={"sysparm_query": query, "sysparm_fields": "number", **params}
    )
    assert answer.status_code == 200, answer.text
    return [row["number"][-1] for row in answer.json()["result"]]  # "INC0010003" -> "3"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=2", "2"),  # facts L98: =
        ("state!=7", "1235"),  # facts L98: !=
        ("state>2", "345"),  # facts L98: > (numeric: "10" > "2")
        ("state>=6", "345"),  # facts L98: >=
        ("state<6", "12"),  # facts L98: <
        ("state<=6", "123"),  # facts L98: <=
        ("stateIN1,2,7", "124"),  # facts L98: IN
        ("stateNOT IN1,2,7", "35"),  # facts L98: NOT IN
        ("short_descriptionSTARTSWITHEnable", "1"),  # facts L98-99: STARTSWITH, case-sensitive
        ("short_descriptionENDSWITHusers", "4"),  # facts L98: ENDSWITH
        ("short_descriptionLIKEmfa", "4"),  # facts L98-99: LIKE (contains), case-sensitive
        ("short_descriptionNOT LIKEmfa", "1235"),  # facts L98: NOT LIKE
        ("categoryISEMPTY", "3"),  # facts L98: ISEMPTY
        ("categoryISNOTEMPTY", "1245"),  # facts L98: ISNOTEMPTY
        ("category=Identity^state=1", "1"),  # facts L97: ^ AND
        ("state=1^ORstate=6", "13"),  # facts L97: ^OR
        ("category=Identity^state=1^ORstate=7", "14"),  # facts L97: ^OR binds tighter than ^
        ("state=1^NQstate=7^category=Identity", "14"),  # facts L97: ^NQ new OR'd query
        ("priority<=2", "14"),  # facts L154-160: computed priority is queryable
        ("no_such_field=1^state=2", "2"),  # facts L100: unknown field silently ignored
        ("no_such_field=1", "12345"),  # facts L100: a query of only invalid parts filters nothing
        ("stateBOGUS2", "12345"),  # facts L100: invalid part (unknown operator) ignored
        ("correlation_id=ticket-3", "3"),  # facts L179: lookup by correlation_id
        ("opened_by.user_name=admin^state=2", "2"),  # facts L99-100: dot-walk not modelled -> ignored
    ],
)
async def test_operator(seeded: httpx.AsyncClient, query: str, expected: str) -> None:
    """facts L96-100: operators and joiners of encoded queries."""
    assert "".join(await _numbers(seeded, query + "^ORDERBYnumber")) == expected


async def test_orderby_and_orderbydesc(seeded: httpx.AsyncClient) -> None:
    """facts L97: ORDERBY<f> and ORDERBYDESC<f>; numeric fields sort numerically; first key wins."""
    assert await _numbers(seeded, "ORDERBYDESCnumber") == list("54321")
    assert await _numbers(seeded, "ORDERBYstate") == list("12345")
    assert await _numbers(seeded, "ORDERBYimpact^ORDERBYDESCnumber") == list("14253")


async def test_dates_compare_as_utc_strings(seeded: httpx.AsyncClient, sim: RunningSimulator) -> None:
    """facts L111, L99: UTC 'YYYY-MM-DD HH:MM:SS' compares correctly; gs.dateGenerate works."""
    rows = sim.state.records.rows("incident")
    third = next(row for row in rows if row["number"] == "INC0010003")["sys_created_on"]
    assert await _numbers(seeded, f"sys_created_on>{third}^ORDERBYnumber") == list("45")
    assert await _numbers(seeded, f"sys_updated_on>={third}^ORDERBYnumber") == list("345")
    day, time = third.split(" ")
    generated = f"sys_created_on>javascript:gs.dateGenerate('{day}','{time}')^ORDERBYnumber"
    assert await _numbers(seeded, generated) == list("45")


async def test_plain_field_parameters(seeded: httpx.AsyncClient) -> None:
    """facts L94: &field=value works instead of sysparm_query and accepts display values."""
    answer = await seeded.get("/api/now/table/incident", params={"state": "2", "sysparm_fields": "number"})
    assert answer.json()["result"] == [{"number": "INC0010002"}]
    by_label = await seeded.get(
        "/api/now/table/incident", params={"state": "Resolved", "sysparm_fields": "number"}
    )
    assert by_label.json()["result"] == [{"number": "INC0010003"}]

"""Journal fields: a write to ``work_notes``/``comments`` appends a ``sys_journal_field`` entry,
read back through the Table API, and the journal's own read ACL (next-features facts A7).
Other docstrings cite lines of ``cat -n /work/shared/reference/servicenow-wire-facts.md``."""

from __future__ import annotations

import re
from typing import Any

import httpx

from localdev.servicenow import RunningSimulator

INCIDENT_URL = "/api/now/table/incident"
JOURNAL_URL = "/api/now/table/sys_journal_field"
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


async def _incident(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await api.post(INCIDENT_URL, json={"short_description": "x", **fields})
    assert answer.status_code == 201, answer.text
    record: dict[str, Any] = answer.json()["result"]
    return record


async def _journal(api: httpx.AsyncClient, query: str, **params: str) -> httpx.Response:
    answer = await api.get(JOURNAL_URL, params={"sysparm_query": query, **params})
    assert answer.status_code == 200, answer.text
    return answer


async def _tick(control: httpx.AsyncClient) -> None:
    """One simulated second, so that entries differ in sys_created_on."""
    assert (await control.post("/__sim/clock", json={"advance_seconds": 1})).status_code == 200


async def test_a_patched_work_note_is_a_journal_entry_not_a_field(api: httpx.AsyncClient) -> None:
    """A7 + facts L113: the PATCH appends an entry; the record's work_notes still reads ''."""
    record = await _incident(api)
    patched = await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"work_notes": "Looks fixed"})
    assert patched.status_code == 200
    result = patched.json()["result"]
    assert result["work_notes"] == ""
    assert result["sys_mod_count"] == "1"  # a note is a change of the record
    assert result["sys_updated_on"] >= record["sys_updated_on"]
    entries = (await _journal(api, f"element_id={record['sys_id']}")).json()["result"]
    assert len(entries) == 1
    entry = entries[0]
    assert set(entry) == {
        "sys_id", "sys_created_on", "sys_created_by", "name", "element", "element_id", "value"
    }  # fmt: skip
    assert (entry["name"], entry["element"], entry["element_id"], entry["value"]) == (
        "incident", "work_notes", record["sys_id"], "Looks fixed"
    )  # fmt: skip
    assert entry["sys_created_by"] == "admin"  # the user behind the token
    assert DATETIME.fullmatch(entry["sys_created_on"])
    assert re.fullmatch(r"[0-9a-f]{32}", entry["sys_id"])
    again = await api.get(f"{INCIDENT_URL}/{record['sys_id']}")
    assert again.json()["result"]["work_notes"] == ""


async def test_the_documented_query_answers_newest_first_with_fields_and_paging(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    """A7: element_id=<id>^element=work_notes, here sorted newest first, through sysparm_fields
    and Link paging like any table (facts L82, L103-104)."""
    record, other = await _incident(api), await _incident(api)
    async with httpx.AsyncClient(base_url=sim.url) as control:
        for text in ("first", "second", "third"):
            await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"work_notes": text})
            await _tick(control)
    await api.put(f"{INCIDENT_URL}/{record['sys_id']}", json={"comments": "to the caller"})
    await api.patch(f"{INCIDENT_URL}/{other['sys_id']}", json={"work_notes": "elsewhere"})
    query = f"element_id={record['sys_id']}^element=work_notes^ORDERBYDESCsys_created_on"
    answer = await _journal(api, query, sysparm_fields="value,sys_created_on", sysparm_limit="2")
    assert [row["value"] for row in answer.json()["result"]] == ["third", "second"]
    assert set(answer.json()["result"][0]) == {"value", "sys_created_on"}
    assert answer.headers["X-Total-Count"] == "3"
    assert 'rel="next"' in answer.headers["Link"]
    comments = (await _journal(api, f"element_id={record['sys_id']}^element=comments")).json()["result"]
    assert [(row["element"], row["value"]) for row in comments] == [("comments", "to the caller")]


async def test_a_note_given_at_creation_and_by_a_fulfiller_is_journaled(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    """The POST's note and a change in the UI (the control API, as "itil") land in the journal too."""
    record = await _incident(api, work_notes="opened by the connector")
    async with httpx.AsyncClient(base_url=sim.url) as control:
        await _tick(control)
        answer = await control.post(
            f"/__sim/records/incident/{record['sys_id']}", json={"work_notes": "on it"}
        )
        assert answer.status_code == 200
    query = f"element_id={record['sys_id']}^ORDERBYsys_created_on"
    rows = (await _journal(api, query)).json()["result"]
    assert [(row["value"], row["sys_created_by"]) for row in rows] == [
        ("opened by the connector", "admin"),
        ("on it", "itil"),
    ]


async def test_an_empty_note_adds_nothing_and_is_not_a_write(api: httpx.AsyncClient) -> None:
    record = await _incident(api)
    patched = await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"work_notes": "  "})
    assert patched.json()["result"]["sys_mod_count"] == "0"
    assert (await _journal(api, f"element_id={record['sys_id']}")).json()["result"] == []


async def test_display_values_concatenate_the_entries_newest_first(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    """A7: with display values the field is one string of ``<time> - <full name> (Work notes)``
    blocks, newest first; the raw value stays ''."""
    record = await _incident(api)
    url = f"{INCIDENT_URL}/{record['sys_id']}"
    async with httpx.AsyncClient(base_url=sim.url) as control:
        await api.patch(url, json={"work_notes": "one"})
        await _tick(control)
        await api.patch(url, json={"work_notes": "two", "comments": "hello"})
    params = {"sysparm_fields": "work_notes,comments", "sysparm_display_value": "true"}
    shown = (await api.get(url, params=params)).json()["result"]
    assert re.fullmatch(
        r"(\S+ \S+) - System Administrator \(Work notes\)\ntwo\n\n(\S+ \S+) - System Administrator "
        r"\(Work notes\)\none\n\n",
        shown["work_notes"],
    )
    assert shown["comments"].endswith(" - System Administrator (Additional comments)\nhello\n\n")
    both = (await api.get(url, params={**params, "sysparm_display_value": "all"})).json()["result"]
    assert both["work_notes"] == {"display_value": shown["work_notes"], "value": ""}


async def test_the_journal_read_acl_answers_an_empty_list(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    """A7 pitfall: an account that may read incidents gets 200 {"result": []} from the journal;
    the note is still added, and a single entry is 404 (facts L119)."""
    record = await _incident(api)
    await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"work_notes": "before"})
    entry = (await _journal(api, f"element_id={record['sys_id']}")).json()["result"][0]
    async with httpx.AsyncClient(base_url=sim.url) as control:
        hidden = await control.post("/__sim/acl/sys_journal_field", json={"readable": False})
        assert hidden.json() == {"unreadable": ["sys_journal_field"]}
        patched = await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"work_notes": "after"})
        assert patched.status_code == 200
        answer = await _journal(api, f"element_id={record['sys_id']}")
        assert answer.json() == {"result": []}
        assert (await api.get(f"{JOURNAL_URL}/{entry['sys_id']}")).status_code == 404
        assert (await api.get(INCIDENT_URL)).json()["result"]  # other tables are unaffected
        assert (await control.get("/__sim/acl")).json() == {"unreadable": ["sys_journal_field"]}
        assert (
            await control.post("/__sim/acl/sys_journal_field", json={"readable": "no"})
        ).status_code == 400
        await control.post("/__sim/acl/sys_journal_field", json={"readable": True})
        values = [
            row["value"] for row in (await _journal(api, f"element_id={record['sys_id']}")).json()["result"]
        ]
        assert values == ["before", "after"]
        await control.post("/__sim/acl/sys_journal_field", json={"readable": False})
        await control.post("/__sim/reset", json={"keep_oauth": True})
        assert (await control.get("/__sim/acl")).json() == {"unreadable": []}


async def test_journal_entries_cannot_be_written_through_the_table_api(api: httpx.AsyncClient) -> None:
    """Entries are the platform's: a client writes the journal field, not the journal table."""
    record = await _incident(api)
    await api.patch(f"{INCIDENT_URL}/{record['sys_id']}", json={"work_notes": "kept"})
    entry = (await _journal(api, f"element_id={record['sys_id']}")).json()["result"][0]
    made = await api.post(JOURNAL_URL, json={"element_id": record["sys_id"], "value": "forged"})
    assert made.status_code == 403
    assert made.json()["status"] == "failure"
    assert (await api.patch(f"{JOURNAL_URL}/{entry['sys_id']}", json={"value": "x"})).status_code == 403
    assert (await api.delete(f"{JOURNAL_URL}/{entry['sys_id']}")).status_code == 403
    rows = (await _journal(api, f"element_id={record['sys_id']}")).json()["result"]
    assert [row["value"] for row in rows] == ["kept"]

"""A ticket's notes through the local host and the ServiceNow simulator: read from the journal, read
from the display values when the journal's ACL hides it, and added once per Idempotency-Key."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Stack
from tests.e2e.tickets_api import connected_tenant, create, reader, records, ticket_body, writer


async def _add(stack: Stack, tenant: str, ticket_id: str, body: dict[str, Any], key: str | None) -> Any:
    headers = writer(stack, tenant)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await stack.client.post(f"/api/tickets/{ticket_id}/notes", json=body, headers=headers)


async def _notes(stack: Stack, tenant: str, ticket_id: str, expect: int = 200) -> Any:
    response = await stack.client.get(f"/api/tickets/{ticket_id}/notes", headers=reader(stack, tenant))
    assert response.status_code == expect, response.text
    return response.json()


async def test_notes_are_added_once_per_key_and_read_from_the_journal(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    ticket = (await create(stack, tenant, ticket_body())).json()
    assert await _notes(stack, tenant, ticket["id"]) == {"source": "journal", "notes": [], "truncated": False}

    note = {"kind": "work_note", "text": "Rolled out to the pilot group.\n\tNext: everyone."}
    added = await _add(stack, tenant, ticket["id"], note, "note-1")
    assert added.status_code == 201, added.text
    again = await _add(stack, tenant, ticket["id"], note, "note-1")
    assert again.status_code == 200, again.text
    assert again.json() == added.json()
    reused = await _add(stack, tenant, ticket["id"], {**note, "kind": "comment"}, "note-1")
    assert reused.status_code == 422
    comment = await _add(stack, tenant, ticket["id"], {"kind": "comment", "text": "Thanks!"}, "note-2")
    assert comment.status_code == 201, comment.text

    listed = await _notes(stack, tenant, ticket["id"])
    assert listed["source"] == "journal"
    assert sorted((n["kind"], n["text"]) for n in listed["notes"]) == [
        ("comment", "Thanks!"),
        ("work_note", note["text"]),
    ]
    assert all(n["createdAt"].endswith(("Z", "+00:00")) for n in listed["notes"])
    journal = await records(stack.simulator, "sys_journal_field")
    assert len([row for row in journal if row["element_id"] == ticket["sysId"]]) == 2  # one per key


async def test_a_hidden_journal_is_read_from_the_display_values(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    ticket = (await create(stack, tenant, ticket_body())).json()
    added = await _add(stack, tenant, ticket["id"], {"kind": "comment", "text": "Line one\nline two"}, "k")
    assert added.status_code == 201, added.text
    await stack.simulator.control("POST", "acl/sys_journal_field", {"readable": False})
    try:
        listed = await _notes(stack, tenant, ticket["id"])
    finally:
        await stack.simulator.control("POST", "acl/sys_journal_field", {"readable": True})
    assert listed["source"] == "display_values"
    assert [(n["kind"], n["text"]) for n in listed["notes"]] == [("comment", "Line one\nline two")]


async def test_requests_the_notes_refuse(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    ticket = (await create(stack, tenant, ticket_body())).json()
    no_key = await _add(stack, tenant, ticket["id"], {"kind": "comment", "text": "x"}, None)
    assert no_key.status_code == 400
    control = await _add(stack, tenant, ticket["id"], {"kind": "comment", "text": "a\x00b"}, "k")
    assert control.status_code == 400
    unknown = await _add(stack, tenant, "0" * 21, {"kind": "comment", "text": "x"}, "k")
    assert unknown.status_code == 404
    await _notes(stack, tenant, "0" * 21, expect=404)

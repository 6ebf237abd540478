"""A ticket's timeline in the `tickets` table against Azurite: events ride in the transaction of the
row they describe, never show up as tickets, are bounded per ticket, and pushed states are written
ETag-conditionally."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from shared.errors import PreconditionFailed
from shared.observability import log_context
from shared.records import Ticket, TicketStateChange, new_ticket_id
from shared.remediation import RemediationChange, RemediationStatus
from shared.services.ticket_events import created_event
from shared.stores import ticket_pushes
from shared.stores.event_rows import note_event
from shared.stores.remediation_rows import RemediationRowRepository
from shared.stores.tables import TableStore, get_entity
from shared.stores.ticket_events import TicketEventRepository
from shared.stores.tickets import TicketRepository
from shared.timeline_models import NoteEvent, PushedState, StoredEvent
from tests.fakes.clock import FakeClock

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SYS_ID = "a" * 32


def ticket(tenant: str, ticket_id: str, **changes: Any) -> Ticket:
    values: dict[str, Any] = {
        "tenant_id": tenant, "ticket_id": ticket_id, "type": "incident", "sys_id": SYS_ID,
        "number": "INC0010001", "instance_url": "https://contoso.service-now.com", "name": "n",
        "description": "d", "priority": 3, "due_date": date(2026, 6, 30), "recommendation_source": "user",
        "recommendation_category": "Data", "improvement_action_id": "AdminMFAV2", "created_by": "u",
        "created_by_name": "U", "created_at": NOW, "state": "1", "state_updated_at": NOW, **changes,
    }  # fmt: skip
    return Ticket.model_validate(values)


def change(ticket_id: str, state: str, minutes: int, mod_count: int) -> TicketStateChange:
    at = NOW + timedelta(minutes=minutes)
    return TicketStateChange(ticket_id, state, at, at.strftime("%Y-%m-%d %H:%M:%S"), mod_count, NOW)


def push(ticket_id: str, state: str, minutes: int, mod_count: int) -> PushedState:
    updated = (NOW + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")
    return PushedState(ticket_id, "incident", SYS_ID, state, updated, mod_count)


async def kinds(events: TicketEventRepository, tenant: str, ticket_id: str) -> list[str]:
    found, _ = await events.events(tenant, ticket_id, limit=500)
    return [event.kind for event in reversed(found)]


@pytest.fixture
def repos(store: TableStore) -> tuple[TicketRepository, TicketEventRepository]:
    return TicketRepository(store), TicketEventRepository(store, FakeClock(NOW + timedelta(hours=1)))


async def test_a_create_is_one_row_that_is_its_event_and_a_refused_one_changes_nothing(
    repos: tuple[TicketRepository, TicketEventRepository],
) -> None:
    tickets, events = repos
    ticket_id = new_ticket_id(NOW)
    with log_context(invocation_id="req-1"):
        saved = await tickets.add(ticket("t1", ticket_id))
    with log_context(invocation_id="req-2"), pytest.raises(PreconditionFailed):
        await tickets.add(ticket("t1", ticket_id, created_by_name="Someone Else"))
    with pytest.raises(PreconditionFailed):  # a stale ETag: the row does not move
        await tickets.replace(saved.model_copy(update={"etag": 'W/"stale"', "state": "9"}))

    stored = await tickets.get("t1", ticket_id)
    assert stored is not None
    created = created_event(stored)
    assert (created.kind, created.created_by_name, created.request_id, created.state) == (
        "created",
        "U",
        "req-1",
        "1",
    )
    assert stored.state == "1"
    assert await kinds(events, "t1", ticket_id) == []  # no event row of its own


async def test_a_creating_ticket_finished_gets_its_created_state_and_keeps_the_request(
    repos: tuple[TicketRepository, TicketEventRepository],
) -> None:
    tickets, _ = repos
    with log_context(invocation_id="req-1"):
        creating = await tickets.add(ticket("t1", new_ticket_id(NOW), status="creating", state="", sys_id=""))
    assert creating.created_state is None
    finished = await tickets.replace(
        creating.model_copy(update={"status": "created", "state": "1", "sys_id": SYS_ID})
    )
    await tickets.replace(finished.model_copy(update={"state": "2"}))  # a later write keeps it

    stored = await tickets.get("t1", creating.ticket_id)
    assert stored is not None
    created = created_event(stored)
    assert (created.status, created.state, created.request_id) == ("created", "1", "req-1")


async def test_a_failed_state_transaction_writes_neither_rows_nor_events(
    repos: tuple[TicketRepository, TicketEventRepository],
) -> None:
    tickets, events = repos
    ids = [new_ticket_id(NOW + timedelta(milliseconds=n)) for n in range(3)]
    for ticket_id in ids:
        await tickets.add(ticket("t1", ticket_id))
    ghost = new_ticket_id(NOW)

    missing = await tickets.merge_states(
        "t1", [change(ids[0], "2", 5, 1), change(ghost, "2", 5, 1), change(ids[1], "2", 5, 1)]
    )

    assert missing == ghost
    assert [await kinds(events, "t1", i) for i in ids] == [[]] * 3
    assert await kinds(events, "t1", ghost) == []
    assert await tickets.merge_states("t1", [change(i, "2", 5, 1) for i in ids]) is None
    assert [await kinds(events, "t1", i) for i in ids] == [["state"]] * 3
    row = await tickets.get("t1", ids[0])
    assert row is not None
    assert (row.state, row.servicenow_mod_count) == ("2", 1)
    result = await tickets.apply_state_changes("t1", [change(ids[2], "6", 9, 2), change(ghost, "6", 9, 2)])
    assert (result.applied, result.missing) == (1, (ghost,))
    assert await kinds(events, "t1", ids[2]) == ["state", "state"]
    assert await kinds(events, "t1", ghost) == []
    await tickets.mark_deleted("t1", [ids[2]], NOW + timedelta(hours=1))
    assert (await kinds(events, "t1", ids[2]))[-1] == "deleted"


async def test_event_rows_never_show_up_as_tickets(
    store: TableStore, repos: tuple[TicketRepository, TicketEventRepository]
) -> None:
    tickets, events = repos
    ids = [new_ticket_id(NOW + timedelta(milliseconds=n)) for n in range(4)]
    for ticket_id in ids:
        await tickets.add(ticket("t1", ticket_id))
        await tickets.merge_states("t1", [change(ticket_id, "2", 5, 1)])
        note = NoteEvent("work_note", "U", NOW, "k" * 64)
        await events.record_note("t1", ticket_id, note)
    await tickets.mark_deleted("t1", ids[:1], NOW)
    await RemediationRowRepository(store).write("t1", [RemediationChange(ids[1], {"regressed": True})])

    page, token = await tickets.page("t1", top=50)
    assert ([t.ticket_id for t in page], token) == (list(reversed(ids)), None)
    flagged, _ = await tickets.page("t1", flag="regressed")
    assert [t.ticket_id for t in flagged] == [ids[1]]
    assert [t.ticket_id async for t in tickets.every_ticket("t1")] == list(reversed(ids))
    counts = await tickets.count_by_state("t1")
    assert counts.states == {("incident", "2"): 4}
    assert counts.flags == {("incident", "regressed"): 1}
    assert set(await tickets.sync_index("t1")) == set(ids)
    by_action = (await tickets.by_improvement_action("t1"))["AdminMFAV2"]
    assert [t.ticket_id for t in by_action] == list(reversed(ids))
    assert [t.deleted for t in by_action] == [False, False, False, True]  # ids[0] was marked deleted
    assert {row.ticket_id for row in await RemediationRowRepository(store).action_tickets("t1")} == set(ids)


async def test_remediation_writes_record_their_changes_in_the_same_transaction(
    store: TableStore, repos: tuple[TicketRepository, TicketEventRepository]
) -> None:
    tickets, events = repos
    rows = RemediationRowRepository(store)
    kept, gone = new_ticket_id(NOW), new_ticket_id(NOW + timedelta(seconds=1))
    await tickets.add(ticket("t1", kept))
    await tickets.add(ticket("t1", gone))
    await (await store.table("tickets")).delete_entity("t1", gone)
    fields = {
        "remediation_status": RemediationStatus.COMPLETED,
        "regressed": True,
        "remediation_checked_at": NOW,
    }

    assert await rows.write("t1", [RemediationChange(gone, fields), RemediationChange(kept, fields)]) == 1
    assert (
        await rows.write("t1", [RemediationChange(kept, {"regressed": False, "write_back_error": None})]) == 1
    )

    found, _ = await events.events("t1", kept, limit=500)
    assert sorted((e.change, e.name) for e in found if e.kind == "remediation") == [
        ("flag_cleared", "regressed"), ("flag_raised", "regressed"), ("status_changed", "completed"),
    ]  # fmt: skip
    assert await kinds(events, "t1", gone) == []  # the row's transaction failed: no event


async def test_a_push_is_written_when_newer_and_a_lost_race_is_decided_again(
    repos: tuple[TicketRepository, TicketEventRepository], monkeypatch: pytest.MonkeyPatch
) -> None:
    tickets, events = repos
    first, second = new_ticket_id(NOW), new_ticket_id(NOW + timedelta(seconds=1))
    await tickets.add(ticket("t1", first))
    await tickets.add(ticket("t1", second))
    await tickets.merge_states("t1", [change(first, "2", 5, 3)])

    assert (
        await events.apply_pushed("t1", [push(first, "6", 1, 2), push(first, "6", 2, 3)]) == 0
    )  # older, equal
    assert await events.apply_pushed("t1", [push(first, "6", 9, 4), push(new_ticket_id(NOW), "2", 1, 1)]) == 1
    row = await tickets.get("t1", first)
    assert row is not None
    assert (row.state, row.servicenow_mod_count) == ("6", 4)

    # Between the push's read and its write the sync writes a newer version: the push loses, reads
    # again, and sees that it is no longer newer.
    read = get_entity
    raced: list[str] = []

    async def racing_read(table: Any, tenant: str, ticket_id: str) -> Mapping[str, Any] | None:
        entity = await read(table, tenant, ticket_id)
        if not raced:
            raced.append(ticket_id)
            await tickets.merge_states("t1", [change(ticket_id, "3", 20, 7)])
        return entity

    monkeypatch.setattr(ticket_pushes, "get_entity", racing_read)
    assert await events.apply_pushed("t1", [push(second, "2", 15, 5)]) == 0
    row = await tickets.get("t1", second)
    assert row is not None
    assert (row.state, row.servicenow_mod_count) == ("3", 7)

    # A race with a write of another column: the second attempt writes.
    raced.clear()

    async def other_write(table: Any, tenant: str, ticket_id: str) -> Mapping[str, Any] | None:
        entity = await read(table, tenant, ticket_id)
        if not raced:
            raced.append(ticket_id)
            await table.update_entity(
                {"PartitionKey": tenant, "RowKey": ticket_id, "Regressed": True}, mode=UpdateMode.MERGE
            )
        return entity

    monkeypatch.setattr(ticket_pushes, "get_entity", other_write)
    assert await events.apply_pushed("t1", [push(second, "6", 30, 8)]) == 1
    found, _ = await events.events("t1", second, limit=500)
    pushed = [e for e in found if e.kind == "state" and e.mod_count == 8]
    assert [(e.state, e.seen_by_push_at is not None, e.seen_by_poll_at) for e in pushed] == [
        ("6", True, None)
    ]


async def test_a_version_seen_by_poll_and_push_is_one_row(
    repos: tuple[TicketRepository, TicketEventRepository],
) -> None:
    tickets, events = repos
    ticket_id = new_ticket_id(NOW)
    await tickets.add(ticket("t1", ticket_id))
    assert await events.apply_pushed("t1", [push(ticket_id, "2", 5, 1)]) == 1
    await tickets.merge_states("t1", [change(ticket_id, "2", 5, 1)])

    found, _ = await events.events("t1", ticket_id, limit=500)
    [state] = [e for e in found if e.kind == "state"]
    assert (state.seen_by_push_at, state.seen_by_poll_at) == (NOW + timedelta(hours=1), NOW)


async def test_only_the_newest_500_are_read_and_the_oldest_are_trimmed(
    store: TableStore, repos: tuple[TicketRepository, TicketEventRepository]
) -> None:
    tickets, events = repos
    ticket_id = new_ticket_id(NOW)
    await tickets.add(ticket("t1", ticket_id))
    notes = [
        note_event("t1", ticket_id, NoteEvent("comment", "U", NOW + timedelta(seconds=n), f"k{n}"))
        for n in range(1, 505)
    ]
    table = await store.table("tickets")
    await asyncio.gather(
        *(
            table.submit_transaction([("upsert", e) for e in notes[start : start + 100]])
            for start in range(0, 504, 100)
        )
    )  # 504 notes and the created event: 505 events

    found, truncated = await events.events("t1", ticket_id, limit=500)

    assert truncated
    assert len(found) == 500
    assert found[0].at == NOW + timedelta(seconds=504)  # newest first
    assert found[-1].at == NOW + timedelta(seconds=5)
    again, still = await events.events("t1", ticket_id, limit=500)  # the 5 oldest were deleted
    assert (len(again), still) == (500, False)
    assert [e.at for e in again] == [e.at for e in found]


def test_stored_event_reads_what_the_store_wrote() -> None:
    from shared.stores.event_rows import stored_event

    entity = note_event("t1", "x", NoteEvent("work_note", "U", NOW, "k"))
    assert stored_event(entity) == StoredEvent("x", "note", NOW, note_kind="work_note", author="U")
    assert stored_event({**entity, "Kind": "unknown"}) is None

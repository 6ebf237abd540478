"""What the read side shows of the Secure Score check: a ticket's remediation block, the summary's
flag counts, and the flag filter of the list (TicketQueries on the in-memory tickets table)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from functions._http import validate
from shared.errors import BadRequest
from shared.models import ConnectionStatus, TicketListQuery
from shared.records import Connection, Ticket, new_ticket_id
from shared.remediation import RemediationStatus
from shared.services.ticket_queries import TicketQueries, remediation_view
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.tickets import InMemoryTickets

TENANT = "11111111-1111-1111-1111-111111111111"
OTHER = "33333333-3333-3333-3333-333333333333"
NOW = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
SCID_SKIPPED = "Device controls (scid_) cannot be updated through Microsoft Graph."


def ticket(n: int = 0, tenant: str = TENANT, **changes: Any) -> Ticket:
    fields: dict[str, Any] = {
        "tenant_id": tenant,
        "ticket_id": new_ticket_id(NOW + timedelta(seconds=n)),
        "type": "incident",
        "sys_id": f"{n:032x}",
        "number": f"INC{10001 + n:07d}",
        "instance_url": "https://contoso.service-now.com",
        "name": f"T{n}",
        "description": "",
        "priority": 3,
        "due_date": date(2026, 7, 1),
        "recommendation_source": "microsoft",
        "recommendation_category": "Identity",
        "improvement_action_id": "AdminMFAV2",
        "created_by": "u",
        "created_by_name": "Wendy Writer",
        "created_at": NOW,
        "state": "1",
        "state_updated_at": NOW,
    }
    return Ticket(**{**fields, **changes})


def checked(**changes: Any) -> dict[str, Any]:
    """The columns a daily check writes, with `changes` over them."""
    return {
        "remediation_status": RemediationStatus.IN_PROGRESS,
        "remediation_score": 2.0,
        "remediation_max_score": 10.0,
        "remediation_checked_at": NOW,
        **changes,
    }


@pytest.fixture
def world() -> tuple[TicketQueries, InMemoryTickets]:
    tickets, connections = InMemoryTickets(), InMemoryConnectionRepository()
    connections.rows[TENANT] = Connection(
        tenant_id=TENANT,
        instance="contoso",
        instance_url="https://contoso.service-now.com",
        client_id="abc",
        status=ConnectionStatus.CONNECTED,
        updated_at=NOW,
    )
    return TicketQueries(connections=connections, tickets=tickets), tickets


def test_no_block_without_an_action_or_before_any_check_or_write_back() -> None:
    assert remediation_view(ticket(improvement_action_id=None, **checked())) is None
    assert remediation_view(ticket()) is None


def test_a_checked_ticket_shows_status_points_times_and_flags() -> None:
    closed = NOW - timedelta(days=9)
    view = remediation_view(ticket(**checked(closed_at=closed, closed_without_remediation=True)))
    assert view is not None
    assert view.model_dump(by_alias=True, mode="json") == {
        "status": "in_progress",
        "score": 2.0,
        "maxScore": 10.0,
        "checkedAt": "2026-06-01T09:30:00Z",
        "completedAt": None,
        "closedAt": closed.isoformat().replace("+00:00", "Z"),
        "flags": {"closedWithoutRemediation": True, "remediatedWhileOpen": False, "regressed": False},
        "writeBack": None,
    }


def test_a_write_back_shows_before_the_first_check_and_a_skipped_device_control_says_so() -> None:
    view = remediation_view(ticket(improvement_action_id="scid_2000", write_back_error=SCID_SKIPPED))
    assert view is not None
    assert (view.status, view.checked_at) == (None, None)
    assert view.write_back is not None
    assert (view.write_back.comment, view.write_back.written_at, view.write_back.error) == (
        None,
        None,
        SCID_SKIPPED,
    )
    written = remediation_view(ticket(**checked(write_back_comment="INC0010001 New", write_back_at=NOW)))
    assert written is not None
    assert written.write_back is not None
    assert (written.write_back.comment, written.write_back.written_at) == ("INC0010001 New", NOW)


async def test_the_summary_counts_each_flag_per_card(world: tuple[TicketQueries, InMemoryTickets]) -> None:
    queries, tickets = world
    tickets.put(ticket(0, **checked(closed_without_remediation=True, regressed=True)))
    tickets.put(ticket(1, **checked(closed_without_remediation=True)))
    tickets.put(ticket(2, **checked(remediated_while_open=True)))
    tickets.put(ticket(3, type="change_request", state="-5", **checked(regressed=True)))
    tickets.put(ticket(4))
    tickets.put(ticket(5, tenant=OTHER, **checked(closed_without_remediation=True)))
    summary = (await queries.summary(TENANT)).model_dump(by_alias=True)
    assert summary["incident"]["total"] == 4
    assert summary["incident"]["flags"] == {
        "closedWithoutRemediation": 2,
        "remediatedWhileOpen": 1,
        "regressed": 1,
    }
    assert summary["change_request"]["flags"] == {
        "closedWithoutRemediation": 0,
        "remediatedWhileOpen": 0,
        "regressed": 1,
    }


async def test_the_list_filters_by_one_flag_with_the_other_filters(
    world: tuple[TicketQueries, InMemoryTickets],
) -> None:
    queries, tickets = world
    flagged = tickets.put(ticket(0, **checked(regressed=True)))
    tickets.put(ticket(1, state="6", **checked(regressed=True)))
    tickets.put(ticket(2, **checked(closed_without_remediation=True)))
    tickets.put(ticket(3, type="change_request", state="-5", **checked(regressed=True)))

    async def ids(**query: Any) -> list[str]:
        page = await queries.page(TENANT, validate(TicketListQuery, query))
        return [t.name for t in page.items]

    assert await ids(flag="regressed") == ["T3", "T1", "T0"]  # newest first
    assert await ids(flag="regressed", type="incident", state="1") == [flagged.name]
    assert await ids(flag="closedWithoutRemediation") == ["T2"]
    assert await ids(flag="remediatedWhileOpen") == []
    [shown] = (await queries.page(TENANT, TicketListQuery(flag="regressed", top=1))).items
    assert shown.remediation is not None
    assert shown.remediation.flags.regressed


@pytest.mark.parametrize("bad", ["closed", "Regressed", "", "regressed,closedWithoutRemediation"])
def test_another_flag_is_refused_naming_the_parameter(bad: str) -> None:
    with pytest.raises(BadRequest) as refused:
        validate(TicketListQuery, {"flag": bad})
    assert [f["field"] for f in refused.value.fields] == ["flag"]

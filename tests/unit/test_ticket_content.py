"""TicketContent without any port: the README's "Ticket mapping" rules, and the row of a record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import BadRequest
from shared.models import CreateTicket, ImprovementAction
from shared.services.ticket_content import (
    DESCRIPTION_MAX,
    Requester,
    TicketContent,
    plain_text,
    row_content,
    ticket_content,
)

REQUESTER = Requester("tenant", "user-id", "Wendy Writer")
TICKET_ID = "8219693799999abcdef01"
AT = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


def content(action: ImprovementAction | None = None, **changes: Any) -> TicketContent:
    body: dict[str, Any] = {
        "type": "incident",
        "name": "Turn on MFA",
        "description": "Admins use passwords only.",
        "priority": 2,
        "dueDate": "2026-06-30",
        "recommendationSource": "microsoft",
        "recommendationCategory": "Identity",
    }
    body.update(changes)
    request = CreateTicket.model_validate({k: v for k, v in body.items() if v is not None})
    return ticket_content(request, REQUESTER, TICKET_ID, action)


def test_the_fields_are_built_once_and_read_only() -> None:
    made = content()
    assert made.fields is made.fields
    with pytest.raises(TypeError):
        made.fields["impact"] = "3"  # type: ignore[index]
    assert set(made.fields) == {
        "short_description", "description", "impact", "urgency", "due_date", "correlation_id",
        "correlation_display",
    }  # fmt: skip


def test_the_users_text_gives_way_so_the_block_survives_in_4000_characters() -> None:
    description = content(description="x" * 4000).fields["description"]
    assert len(description) == DESCRIPTION_MAX
    text, block = description.split("\n\n-- Microsoft 365 Security Connector --\n")
    assert text.endswith("x…")
    assert block.splitlines() == [
        "Task: Turn on MFA",
        "Recommendation source: Microsoft Secure Score",
        "Recommendation category: Identity",
        "Requested by: Wendy Writer (user-id)",
        f"Connector ticket id: {TICKET_ID}",
    ]


def test_without_an_action_url_the_link_is_secure_scores_list_of_actions() -> None:
    action = ImprovementAction(id="Admin MFA/V2", title="Require MFA", action_url="http://insecure.example")
    made = content(action, improvementActionId="Admin_MFA.V2")
    assert made.improvement_action_link == (
        "https://security.microsoft.com/securescore?viewid=actions&actionId=Admin_MFA.V2"
    )
    assert f"Improvement action link: {made.improvement_action_link}" in made.fields["description"]


def test_a_gap_secure_score_cannot_fill_is_a_validation_error() -> None:
    action = ImprovementAction(id="NoCategory", title="  Something to do  ")
    made = content(action, name=None, description=None, improvementActionId="NoCategory")
    assert (made.name, made.description) == ("Something to do", "")
    with pytest.raises(BadRequest) as missing:
        content(action, recommendationCategory=None, improvementActionId="NoCategory")
    assert missing.value.fields[0]["field"] == "recommendationCategory"


def test_plain_text_keeps_line_breaks_and_drops_markup() -> None:
    markup = "<h2>Steps</h2><ol><li>One &amp; two</li><li>Three</li></ol>\r\n\n\n\n<p>Done</p>"
    assert plain_text(markup) == "Steps\nOne & two\nThree\n\nDone"


@pytest.mark.parametrize(
    ("record", "priority", "state"),
    [
        ({"priority": "2", "state": "2"}, 2, "2"),
        ({"priority": "4", "state": ""}, 4, "1"),  # the instance's own lookup rules win
        ({"priority": "", "state": None}, 2, "1"),  # nothing usable: what was asked, and "New"
    ],
)
def test_the_row_shows_what_servicenow_made(record: dict[str, Any], priority: int, state: str) -> None:
    made = content()
    row = made.ticket({"sys_id": "s", "number": "INC1", **record}, instance_url="https://i", at=AT)
    assert (row.priority, row.state, row.sys_id, row.number) == (priority, state, "s", "INC1")
    assert (row.tenant_id, row.ticket_id, row.created_by, row.created_by_name) == (
        "tenant",
        TICKET_ID,
        "user-id",
        "Wendy Writer",
    )
    assert (row.created_at, row.state_updated_at, row.servicenow_updated_on) == (AT, AT, None)


def test_a_change_request_row_starts_in_its_own_new_state() -> None:
    row = content(type="change_request").ticket({}, instance_url="https://i", at=AT)
    assert row.state == "-5"


@pytest.mark.parametrize("type", ["incident", "change_request"])
def test_a_row_gives_back_the_content_it_was_written_from(type: str) -> None:
    action = ImprovementAction(
        id="AdminMFAV2", title="Require MFA", remediation="<p>Do it.</p>", action_url="https://x.example/a"
    )
    made = content(action, type=type, name=None, description=None, improvementActionId="AdminMFAV2")
    row = made.row(instance_url="https://contoso.service-now.com", at=AT)
    assert row_content(row) == made
    assert row_content(row).fields == made.fields


def test_a_row_stored_without_the_link_gives_secure_scores_list_of_actions() -> None:
    made = content(improvementActionId="AdminMFAV2")
    row = made.row(instance_url="https://contoso.service-now.com", at=AT)
    older = row.model_copy(update={"improvement_action_link": None})
    assert row_content(older).improvement_action_link == (
        "https://security.microsoft.com/securescore?viewid=actions&actionId=AdminMFAV2"
    )

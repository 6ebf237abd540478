"""Example requests and answers of the HTTP API, for the OpenAPI document (`functions/_contract.py`).

Answers are built as the response models themselves, so an example that no longer fits its model
fails on import; request bodies are plain JSON (a model would hide the client secret), checked
against their models by the unit tests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from shared.models import (
    AuthorizeResult,
    ConfigureResult,
    ConnectionStatus,
    ConnectionView,
    HealthStatus,
    StateCount,
    SyncQueued,
    TicketPage,
    TicketSummary,
    TicketTypeSummary,
    TicketView,
)
from shared.note_models import Note, NoteList
from shared.remediation import RemediationStatus
from shared.remediation_models import (
    FlagCounts,
    RemediationFlags,
    RemediationView,
    SecureScoreView,
    WriteBack,
)
from shared.ticket_states import effective_state_names

INSTANCE_URL = "https://contoso.service-now.com"
TICKET_ID = "82463829341275f3a9c01"
AT = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
STATE_NAMES_UPDATE: dict[str, Any] = {"incident": {"6": "Fixed"}, "change_request": {"-1": "Rolling out"}}
STATE_NAMES = effective_state_names(STATE_NAMES_UPDATE)
AUTHORIZE_URL = (
    f"{INSTANCE_URL}/oauth_auth.do?response_type=code&client_id=3f9a1c0e5b7d4e2f"
    "&redirect_uri=https%3A%2F%2Fapp.example.net%2Fapi%2Foauth%2Fcallback&state=Xq3...&code_challenge=E9M..."
    "&code_challenge_method=S256"
)

CONFIGURE_REQUEST: dict[str, Any] = {
    "instance": "contoso",
    "clientId": "3f9a1c0e5b7d4e2f",
    "clientSecret": "<the client secret of the Application Registry entry>",
}
CREATE_TICKET_REQUEST: dict[str, Any] = {
    "type": "incident",
    "improvementActionId": "MFARegistrationV2",
    "priority": 2,
    "dueDate": "2030-01-31",
    "recommendationSource": "microsoft",
}
CREATE_TICKET_BY_HAND: dict[str, Any] = {
    "type": "change_request",
    "name": "Block legacy authentication",
    "description": "Turn off basic authentication for Exchange Online.",
    "priority": 3,
    "dueDate": "2030-03-31",
    "recommendationSource": "user",
    "recommendationCategory": "Identity",
}

TICKET = TicketView(
    id=TICKET_ID,
    type="incident",
    number="INC0010023",
    sys_id="9d385017c611228701d22104cc95c371",
    url=f"{INSTANCE_URL}/nav_to.do?uri=incident.do%3Fsys_id%3D9d385017c611228701d22104cc95c371",
    state="2",
    state_name="In Progress",
    name="Ensure multifactor authentication is enabled for all users",
    description="Require MFA registration for every user.",
    priority=2,
    due_date=date(2030, 1, 31),
    recommendation_source="microsoft",
    recommendation_category="Identity",
    improvement_action_id="MFARegistrationV2",
    created_by="Ada Admin",
    created_at=AT,
    state_updated_at=AT,
)
CREATING_TICKET = TICKET.model_copy(
    update={"number": "", "sys_id": "", "url": "", "state": "", "state_name": "", "status": "creating"}
)
CHECKED = datetime(2025, 3, 2, 3, 0, tzinfo=UTC)
# Secure Score gives the action its full points while the incident is still open.
CHECKED_TICKET = TICKET.model_copy(
    update={
        "remediation": RemediationView(
            status=RemediationStatus.COMPLETED,
            score=9.0,
            max_score=9.0,
            checked_at=CHECKED,
            completed_at=CHECKED,
            closed_at=None,
            flags=RemediationFlags(
                closed_without_remediation=False, remediated_while_open=True, regressed=False
            ),
            write_back=WriteBack(
                comment=f"ServiceNow incident INC0010023 (In Progress): {TICKET.url}", written_at=AT
            ),
        )
    }
)
TICKET_PAGE = TicketPage(items=[CHECKED_TICKET], continuation_token="eyJ0IjoiLi4uIn0")
SUMMARY = TicketSummary(
    incident=TicketTypeSummary(
        total=3,
        states=[
            StateCount(state="1", name="New", count=1),
            StateCount(state="2", name="In Progress", count=2),
        ],
        flags=FlagCounts(remediated_while_open=1),
    ),
    change_request=TicketTypeSummary(
        total=1, states=[StateCount(state="-1", name="Rolling out", count=1)], flags=FlagCounts()
    ),
)
CONNECTED = ConnectionView(
    status=ConnectionStatus.CONNECTED,
    instance="contoso",
    instance_url=INSTANCE_URL,
    client_id="3f9a1c0e5b7d4e2f",
    connected_by="Ada Admin",
    connected_at=AT,
    access_token_expires_at=datetime(2025, 3, 2, 10, 0, tzinfo=UTC),
    refresh_token_expires_at=datetime(2025, 4, 25, 9, 30, tzinfo=UTC),
    last_sync_at=datetime(2025, 3, 2, 9, 35, 4, tzinfo=UTC),
    last_sync_started_at=datetime(2025, 3, 2, 9, 35, tzinfo=UTC),
    state_names=STATE_NAMES,
    secure_score=SecureScoreView(write_back=True, work_notes=True, checked_at=CHECKED),
)
SECURE_SCORE_UPDATE: dict[str, Any] = {"writeBack": True}
WORK_NOTES_UPDATE: dict[str, Any] = {"workNotes": True}
CONFIGURED = ConfigureResult(status=ConnectionStatus.PENDING_AUTHORIZATION, authorize_url=AUTHORIZE_URL)
AUTHORIZED = AuthorizeResult(status=ConnectionStatus.CONNECTED, authorize_url=AUTHORIZE_URL)
SYNC_QUEUED = SyncQueued(requested_at=AT)
HEALTHY = HealthStatus()
MISCONFIGURED = HealthStatus(
    status="misconfigured", problems=["PORTAL_URL: must be an http(s) URL with a host"]
)
IMPROVEMENT_ACTIONS: dict[str, Any] = {
    "items": [
        {
            "id": "MFARegistrationV2",
            "title": "Ensure multifactor authentication is enabled for all users",
            "category": "Identity",
            "maxScore": 9.0,
            "currentScore": 4.5,
            "actionUrl": "https://security.microsoft.com/securescore?viewid=actions",
            "deprecated": False,
            "tickets": [
                {
                    "id": TICKET_ID,
                    "type": "incident",
                    "number": "INC0010023",
                    "state": "2",
                    "stateName": "In Progress",
                    "url": TICKET.url,
                    "status": "created",
                }
            ],
        }
    ]
}

NOTE = Note(
    kind="work_note",
    text="Conditional Access policy rolled out to the pilot group.",
    author="Ada Admin",
    created_at=datetime(2030, 1, 12, 9, 30, 5, tzinfo=UTC),
)
NOTES = NoteList(
    source="journal",
    notes=[
        Note(
            kind="comment",
            text="We will enable the policy for everyone on Monday.",
            author="svc.m365.integration",
            created_at=datetime(2030, 1, 13, 8, 0, 0, tzinfo=UTC),
        ),
        Note(
            kind="work_note",
            text="Conditional Access policy rolled out to the pilot group.",
            author="svc.m365.integration",
            created_at=datetime(2030, 1, 12, 9, 30, 5, tzinfo=UTC),
        ),
    ],
)
ADD_NOTE_REQUEST: dict[str, Any] = {
    "kind": "work_note",
    "text": "Conditional Access policy rolled out to the pilot group.",
}

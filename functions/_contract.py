"""What the OpenAPI document says about each HTTP function, keyed by its registered function name.

The routes, methods and required roles come from the registered functions themselves
(`functions/_openapi.py` reads them from the app, the role from `_http.required_role`); this module
adds what code does not show: a summary, the request and query models, the answers with their
models and headers, the error classes each operation can answer (their status and code come from
`shared/errors.py`), and examples. A registered HTTP function without an entry here fails the
unit tests, so a new endpoint cannot go undocumented.

Models are given as classes, or by name in `shared.models` for models another change adds.
"""

from __future__ import annotations

from pydantic import TypeAdapter

from functions import _contract_examples as ex
from functions._contract_operator import OPERATOR_OPERATIONS
from functions._contract_push import PUSH_OPERATIONS
from functions._contract_rules import RULE_OPERATIONS
from functions._contract_timeline import TIMELINE_OPERATIONS
from functions._contract_types import Answer, Errors, Operation, PathParameter
from functions.docs import ASSETS
from functions.portal import ASSETS as PORTAL_ASSETS
from shared.action_models import ImprovementActionPage, ImprovementActionQuery
from shared.diagnostics_models import DiagnosticsResult
from shared.errors import (
    BadRequest,
    Conflict,
    ConnectionNotReady,
    DependencyNotConfigured,
    Forbidden,
    ForbiddenOrigin,
    GrantRevoked,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    Misconfigured,
    NotFound,
    PayloadTooLarge,
    ReauthorizationRequired,
    TicketDeletedInServiceNow,
    TicketNotCreated,
    Unauthenticated,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.models import (
    AuthorizeResult,
    CallbackParams,
    ConfigureConnection,
    ConfigureResult,
    ConnectionView,
    CreateTicket,
    HealthStatus,
    StateNames,
    StateNamesUpdate,
    SyncQueued,
    TicketListQuery,
    TicketPage,
    TicketSummary,
    TicketView,
)
from shared.note_models import AddNote, Note, NoteList
from shared.remediation_models import SecureScoreUpdate

# Every protected operation: the principal, the role, the settings, storage, a lost race.
PROTECTED: Errors = (Unauthenticated, Forbidden, Conflict, Misconfigured, UpstreamUnavailable)
# Every POST, PUT and DELETE: a page of another site, a body that is not JSON.
WRITE: Errors = (ForbiddenOrigin, UnsupportedMediaType)
# Every operation that reads a JSON body.
BODY: Errors = (BadRequest, PayloadTooLarge)
# ServiceNow answered, but not as it should (or Key Vault did not).
SERVICENOW: Errors = (UpstreamError, UpstreamRejected, GrantRevoked, ReauthorizationRequired)


TICKET_HEADERS = ("Location",)
PREFLIGHT_HEADERS = ("Allow", *(f"Access-Control-Allow-{h}" for h in ("Origin", "Methods", "Headers")))
PREFLIGHT_HEADERS += ("Access-Control-Max-Age",)
_STATE_NAMES = TypeAdapter(StateNames)
_TEXT = {"type": "string"}

OPERATIONS: dict[str, Operation] = {
    "health": Operation(
        summary="Liveness probe",
        description="Touches no dependency. 503 names app settings that fail validation (names and rules, "
        "never values).",
        tag="Health",
        answers=(
            Answer(200, "The app is up.", HealthStatus, ex.HEALTHY, mode="validation"),
            Answer(
                503, "An app setting fails validation.", HealthStatus, ex.MISCONFIGURED, mode="validation"
            ),
        ),
        errors=(),
    ),
    "provisioning_status": Operation(
        summary="The tenant's ServiceNow connection",
        description="Where the connection stands: status, instance, tokens' lifetimes, the last sync and its "
        "progress, the last error, the state names the portal shows, and `secureScore`: whether ticket "
        "states are written back to Secure Score (`writeBack`), whether tickets remediated while open get a "
        "work note (`workNotes`), when the daily remediation check last ran "
        "(`checkedAt`), and until when Graph asked to be left alone (`pausedUntil`, null unless paused).",
        tag="Provisioning",
        answers=(Answer(200, "The connection's status.", ConnectionView, ex.CONNECTED),),
        errors=PROTECTED,
    ),
    "provisioning_configure": Operation(
        summary="Save the ServiceNow instance and OAuth client",
        description="Saves the instance and the client (`clientSecret` may be left out to keep the stored "
        "one) and starts an authorization: open `authorizeUrl` and click Allow.",
        tag="Provisioning",
        answers=(Answer(200, "Saved; status `pending_authorization`.", ConfigureResult, ex.CONFIGURED),),
        errors=(*PROTECTED, *WRITE, *BODY, UpstreamError),
        body=ConfigureConnection,
        body_examples={"connect": ex.CONFIGURE_REQUEST},
    ),
    "provisioning_authorize": Operation(
        summary="A fresh authorize link",
        description="A new single-use authorize URL (new state and PKCE) for the saved instance; links handed "
        "out before stop working. The status stays as it was until the link is completed.",
        tag="Provisioning",
        answers=(Answer(200, "The link to open.", AuthorizeResult, ex.AUTHORIZED),),
        errors=(*PROTECTED, *WRITE, ConnectionNotReady, UpstreamError),
    ),
    "provisioning_state_names": Operation(
        summary="Name ticket states",
        description="Custom state names by table and state code, merged over ServiceNow's labels; `null` "
        "reverts a code to its label. Answers the effective names.",
        tag="Provisioning",
        answers=(Answer(200, "The effective state names.", _STATE_NAMES, ex.STATE_NAMES),),
        errors=(*PROTECTED, *WRITE, *BODY, ConnectionNotReady),
        body=StateNamesUpdate,
        body_examples={"rename": ex.STATE_NAMES_UPDATE},
    ),
    "provisioning_secure_score": Operation(
        summary="Switch the write-back to Secure Score and the work notes",
        description="Either switch or both; one left out keeps its setting. `writeBack: true` makes the daily check write each ticket's ServiceNow number, link "
        "and state as a comment on its improvement action's Secure Score control (once per change; the "
        "control's state is kept; device controls, `scid_...`, cannot be written and are skipped); "
        "`false` stops it. Off until turned on. It needs the Microsoft Graph application permission "
        "`SecurityEvents.ReadWrite.All` on the app's Graph registration (`GRAPH_CLIENT_ID`), granted "
        "with admin consent in the tenant; without it the write-backs fail and each ticket shows the "
        "error. `workNotes: true` makes the daily check add one work note to a ticket's ServiceNow record "
        "when Secure Score shows its improvement action done while the ticket is still open (once per "
        "ticket, never sent twice: it is looked for in the record's journal before any re-send, which "
        "needs read access to `sys_journal_field`). Off until turned on. Answers the connection's status.",
        tag="Provisioning",
        answers=(Answer(200, "Saved; the connection's status.", ConnectionView, ex.CONNECTED),),
        errors=(*PROTECTED, *WRITE, *BODY, ConnectionNotReady),
        body=SecureScoreUpdate,
        body_examples={"turn on": ex.SECURE_SCORE_UPDATE, "work notes on": ex.WORK_NOTES_UPDATE},
    ),
    "provisioning_remove": Operation(
        summary="Remove the connection",
        description="Revokes the tokens at ServiceNow (best effort) and deletes the secrets; the status "
        "becomes `not_configured`. Tickets stay listed.",
        tag="Provisioning",
        answers=(Answer(204, "Removed."),),
        errors=(*PROTECTED, *WRITE, UpstreamError),
    ),
    "provisioning_diagnostics": Operation(
        summary="Test the connection",
        description="A checklist of what a working connection needs, each item `passed`, `failed` (with a "
        "`fix` in words) or `skipped` (a check it needs failed): the instance answers, the OAuth client "
        "and grant (a token refresh now), reading incidents, change requests and `sys_choice`, the "
        "instance's clock, and the refresh token's lifetime. Only reads reach the instance; nothing is "
        "created. ServiceNow's failures are failed checks, not errors. A refresh that finds the grant "
        "dead sets the status to `reauthorization_required`.",
        tag="Provisioning",
        answers=(
            Answer(
                200,
                "The checklist.",
                DiagnosticsResult,
                {
                    "checks": [
                        {
                            "id": "read_incidents",
                            "title": "Read incidents",
                            "status": "failed",
                            "detail": "ServiceNow refused to read incident (HTTP 403: Operation Failed).",
                            "fix": "The integration user lacks the role or ACL to read incidents (incident): "
                            "give it the itil role. Then test again.",
                        }
                    ],
                    "checkedAt": "2025-01-15T12:00:00Z",
                },
            ),
        ),
        errors=(*PROTECTED, *WRITE, ConnectionNotReady, ReauthorizationRequired),
    ),
    "oauth_callback": Operation(
        summary="ServiceNow's redirect after consent",
        description="Where ServiceNow sends the admin's browser. Always a redirect to the portal: "
        "`servicenow=connected`, or `servicenow=error&reason=<reason>` with a reason of `denied`, "
        "`authorization_failed`, `unknown_state`, `expired_state`, `replay`, `superseded`, "
        "`configuration_changed`, `exchange_failed` or `temporarily_unavailable`.",
        tag="Provisioning",
        answers=(
            Answer(
                302, "To the portal, with the outcome in the query.", headers=("Location", "Cache-Control")
            ),
        ),
        errors=(Misconfigured,),
        query=CallbackParams,
        query_example={"state": "Xq3...", "code": "c0ffee..."},
        query_enforced=False,
    ),
    "tickets_create": Operation(
        summary="Create a ticket",
        description="Creates an incident or a change request in the tenant's ServiceNow. Send an "
        "`Idempotency-Key` and retry with the same key and body (README, Idempotency). Without "
        "`improvementActionId`, `name` and `recommendationCategory` are required.",
        tag="Tickets",
        answers=(
            Answer(201, "Created.", TicketView, ex.TICKET, TICKET_HEADERS),
            Answer(
                200,
                "The ticket this Idempotency-Key already made; nothing was created.",
                TicketView,
                ex.TICKET,
            ),
            Answer(
                202,
                "ServiceNow has not confirmed the record yet: `status` is `creating` and the app finishes it "
                "by itself; read `Location` until `status` is `created` or `failed`.",
                TicketView,
                ex.CREATING_TICKET,
                TICKET_HEADERS,
            ),
        ),
        errors=(
            *PROTECTED,
            *WRITE,
            *BODY,
            *SERVICENOW,
            ConnectionNotReady,
            IdempotencyKeyInProgress,
            IdempotencyKeyReused,
            DependencyNotConfigured,
        ),
        body=CreateTicket,
        body_examples={"from Secure Score": ex.CREATE_TICKET_REQUEST, "by hand": ex.CREATE_TICKET_BY_HAND},
        request_headers=("Idempotency-Key",),
    ),
    "tickets_list": Operation(
        summary="List tickets",
        description="The tenant's tickets, newest first, a page at a time; pass `continuationToken` from the "
        "previous page for the next. `type`, `state` and `flag` (a remediation flag: "
        "`closedWithoutRemediation`, `remediatedWhileOpen` or `regressed`) keep only the tickets that "
        "match all given. A page may hold fewer than `top` tickets and still have a next one.",
        tag="Tickets",
        answers=(Answer(200, "A page of tickets.", TicketPage, ex.TICKET_PAGE),),
        errors=(*PROTECTED, BadRequest),
        query=TicketListQuery,
        query_example={"type": "incident", "flag": "remediatedWhileOpen", "top": 20},
    ),
    "tickets_summary": Operation(
        summary="Count tickets by state",
        description="The portal's two cards: per ticket type, the total and the count per state with its "
        "name, and `flags`: how many tickets carry each remediation flag. Tickets without a ServiceNow "
        "record (`creating`, `failed`) are not counted.",
        tag="Tickets",
        answers=(Answer(200, "The counts.", TicketSummary, ex.SUMMARY),),
        errors=PROTECTED,
    ),
    "tickets_get": Operation(
        summary="One ticket",
        description="A ticket of the caller's tenant (another tenant's is 404). `remediation` is what the "
        "daily Secure Score check found about its improvement action (status, points, flags) and the last "
        "write-back of its state to Secure Score; null for a ticket without an action, or one neither "
        "checked nor written back yet.",
        tag="Tickets",
        answers=(Answer(200, "The ticket.", TicketView, ex.CHECKED_TICKET),),
        errors=(*PROTECTED, NotFound),
        path={"id": PathParameter("The ticket id (21 characters).", ex.TICKET_ID)},
    ),
    "ticket_notes_list": Operation(
        summary="A ticket's work notes and comments",
        description="The work notes and additional comments of the ticket's ServiceNow record, newest first, "
        "at most 100 (`truncated` says when there are more), times in UTC. Read from `sys_journal_field`; "
        "when the integration user may not read it (ServiceNow then answers an empty list), from the "
        "record's display values (`source: display_values`, authors as full names, times converted from "
        "the integration user's time zone). A ticket without a record yet (`creating`, `failed`) has none.",
        tag="Tickets",
        answers=(Answer(200, "The notes.", NoteList, ex.NOTES),),
        errors=(*PROTECTED, *SERVICENOW, NotFound, ConnectionNotReady, TicketDeletedInServiceNow),
        path={"id": PathParameter("The ticket id (21 characters).", ex.TICKET_ID)},
    ),
    "ticket_notes_add": Operation(
        summary="Add a work note or comment",
        description="Appends a work note (internal) or an additional comment (visible to the caller's "
        "users in ServiceNow) to the ticket's record. `Idempotency-Key` is required: a repeat with the same "
        "key and body answers the same note and sends nothing; after a 503 repeat it with the same key: the "
        "app looks for the note in the record's journal before sending it again. `text`: 1 to 4000 "
        "characters, no control characters but newline and tab.",
        tag="Tickets",
        answers=(
            Answer(201, "Added.", Note, ex.NOTE),
            Answer(200, "The note this Idempotency-Key already added; nothing was sent.", Note, ex.NOTE),
        ),
        errors=(
            *PROTECTED,
            *WRITE,
            *BODY,
            *SERVICENOW,
            NotFound,
            ConnectionNotReady,
            IdempotencyKeyInProgress,
            IdempotencyKeyReused,
            TicketDeletedInServiceNow,
            TicketNotCreated,
        ),
        body=AddNote,
        body_examples={"work_note": ex.ADD_NOTE_REQUEST},
        path={"id": PathParameter("The ticket id (21 characters).", ex.TICKET_ID)},
        request_headers=("Idempotency-Key",),
    ),
    "sync_now": Operation(
        summary="Sync now",
        description="Queues a token refresh and state sync of the caller's tenant. Done when "
        "`GET /api/provisioning` shows `lastSyncStartedAt` at or after `requestedAt` and "
        "`syncInProgress: false`.",
        tag="Sync",
        answers=(Answer(202, "Queued.", SyncQueued, ex.SYNC_QUEUED),),
        errors=(*PROTECTED, *WRITE, ConnectionNotReady, ReauthorizationRequired),
    ),
    "improvement_actions_list": Operation(
        summary="Secure Score improvement actions",
        description="The tenant's improvement actions from Microsoft Graph, with their points and the "
        "tickets made for each. Needs no ServiceNow connection.",
        tag="Improvement actions",
        answers=(Answer(200, "Every action of the tenant.", ImprovementActionPage, ex.IMPROVEMENT_ACTIONS),),
        errors=(
            Unauthenticated,
            Forbidden,
            BadRequest,
            Misconfigured,
            UpstreamError,
            UpstreamUnavailable,
            DependencyNotConfigured,
        ),
        query=ImprovementActionQuery,
        query_example={"category": "Identity", "hasTicket": False},
    ),
    "cors_preflight": Operation(
        summary="CORS preflight (any route)",
        description="`OPTIONS` on any route, also with more segments than shown: from an allowed origin, "
        "204 with the `Access-Control-*` headers; from any other origin, 403 `forbidden_origin`; "
        "without `Origin`, 204 with `Allow`.",
        tag="CORS",
        answers=(Answer(204, "Allowed (or not a CORS request).", headers=PREFLIGHT_HEADERS),),
        errors=(ForbiddenOrigin, Misconfigured),
        path={"path": PathParameter("Any route under /api.", "tickets")},
        request_headers=("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"),
    ),
    "openapi_document": Operation(
        summary="This document",
        description="The OpenAPI 3.1 document of the API (the repository's `openapi.json`).",
        tag="Documentation",
        answers=(Answer(200, "The document.", schema={"type": "object"}, example={"openapi": "3.1.0"}),),
        errors=(),
    ),
    "docs_page": Operation(
        summary="Browsable API documentation",
        description="Swagger UI for this document, served by the app (no third-party site is contacted).",
        tag="Documentation",
        answers=(
            Answer(200, "The page.", media_type="text/html", schema=_TEXT, example="<!doctype html>..."),
        ),
        errors=(),
    ),
    "docs_asset": Operation(
        summary="A file of the documentation page",
        description="One of the few script and style files the documentation page loads.",
        tag="Documentation",
        answers=(
            Answer(200, "A script.", media_type="text/javascript", schema=_TEXT, example="/* ... */"),
            Answer(200, "A style sheet.", media_type="text/css", schema=_TEXT, example="/* ... */"),
        ),
        errors=(NotFound,),
        path={"file": PathParameter("The file's name.", "swagger-ui.css", tuple(ASSETS))},
    ),
    "portal_page": Operation(
        summary="The portal",
        description="The admin's pages (connect ServiceNow, share improvement actions, track tickets), "
        "served by the app; they call this API from its own origin and load nothing from another site.",
        tag="Portal",
        answers=(
            Answer(200, "The page.", media_type="text/html", schema=_TEXT, example="<!doctype html>..."),
        ),
        errors=(),
    ),
    "portal_asset": Operation(
        summary="A file of the portal",
        description="One of the portal's script modules or its style sheet.",
        tag="Portal",
        answers=(
            Answer(200, "A script.", media_type="text/javascript", schema=_TEXT, example="/* ... */"),
            Answer(200, "A style sheet.", media_type="text/css", schema=_TEXT, example="/* ... */"),
        ),
        errors=(NotFound,),
        path={"file": PathParameter("The file's name.", "app.js", tuple(PORTAL_ASSETS))},
    ),
    "portal_config": Operation(
        summary="What the portal may offer",
        description="`localSignIn`: whether the portal offers signing in as any tenant, user and role "
        "(a principal header the page builds), which only a local development host (`LOCAL_DEV=true`) trusts.",
        tag="Portal",
        answers=(
            Answer(
                200,
                "The portal's options.",
                schema={
                    "type": "object",
                    "properties": {"localSignIn": {"type": "boolean"}},
                    "required": ["localSignIn"],
                    "additionalProperties": False,
                },
                example={"localSignIn": False},
            ),
        ),
        errors=(Misconfigured,),
    ),
    **OPERATOR_OPERATIONS,
    **RULE_OPERATIONS,
    **PUSH_OPERATIONS,
    **TIMELINE_OPERATIONS,
}

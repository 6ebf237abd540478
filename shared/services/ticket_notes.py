"""A ticket's conversation: the work notes and additional comments of its ServiceNow record.

**Reading.** One request to `sys_journal_field` (the newest `MAX_NOTES` entries of both fields).
Its read ACL answers an integration user without access an empty list, not an error, so an empty
journal is checked against the record's own journal fields read as display values: entries there
mean the journal is hidden, and they are parsed instead (`journal_display`); the answer says which
source it came from.

**Adding.** A PATCH of `work_notes` or `comments` appends an entry and has no idempotency key, so
it is sent once, under a claim of the caller's Idempotency-Key in the `idempotency` table (its own
key space: the hash of the ticket id and the key, NUL-separated, which no create key can spell):

1. A new claim is written before the PATCH (a conditional insert: one request per key sends).
   ServiceNow's answer completes it; a failure ServiceNow certainly did not carry out deletes it
   (the key is free again); an ambiguous one keeps it, its lease held for the settle window (the
   PATCH's transaction may still commit), and the caller gets 503 with that Retry-After.
2. A repeat with another body gets 422; of a completed claim, the same note (nothing is sent); of
   a claim whose lease runs, 409 `idempotency_key_in_progress`. A repeat that takes over a claim in
   progress first reads the notes: an entry of the same kind with exactly the text, made no earlier
   than the claim (less `CLOCK_SLACK`, for ServiceNow's whole-second stamps and clock), is taken as
   the note and the claim completed; only otherwise is the PATCH sent again. Notes of the
   integration user cannot be told apart from others' (our connection does not know its ServiceNow
   user name), so an identical note someone else wrote in that window counts as ours.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable
from datetime import datetime, timedelta

from shared.clock import Clock
from shared.errors import (
    AppError,
    BadRequest,
    Conflict,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotFound,
    PreconditionFailed,
    TicketDeletedInServiceNow,
    TicketNotCreated,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.identity import Caller
from shared.journal_ports import JournalEntries
from shared.note_models import MAX_NOTES, AddNote, JournalField, Note, NoteKind, NoteList
from shared.ports import ConnectionStore, IdempotencyClaims, ServiceNowRecord, ServiceNowRecords, TicketStore
from shared.records import TICKET_ID, Connection, IdempotencyRecord, Ticket, usable_connection
from shared.services.idempotency_claims import idempotency_key_hash, new_claim
from shared.services.journal_display import display_notes
from shared.services.sync_marks import parse_glide
from shared.services.ticket_policy import TicketingPolicy
from shared.timeline_models import NoteEvent
from shared.timeline_ports import NoteEvents

JOURNAL = "sys_journal_field"
# A note's claim is held until its journal write has surely ended: that write is sent again after
# a 429 or a 503 with Retry-After (3 waits of at most 30 s), and ServiceNow may work on the last
# one for its 60 s quota. A repeat in that time gets 409 with Retry-After; none can send beside it.
NOTE_LEASE = timedelta(minutes=5)
CLOCK_SLACK = timedelta(seconds=2)
_FIELDS: dict[str, JournalField] = {"work_note": "work_notes", "comment": "comments"}
_KINDS: dict[str, NoteKind] = {"work_notes": "work_note", "comments": "comment"}


def note_key_hash(ticket_id: str, idempotency_key: str | None) -> str:
    """The claim's row key: apart from every create's (those hash the key alone)."""
    if idempotency_key is None:
        message = "An Idempotency-Key header is required to add a note."
        raise BadRequest(message, fields=[{"field": "Idempotency-Key", "message": message}])
    idempotency_key_hash(idempotency_key)  # the same rules for the key as a create's
    # NUL separates the parts: a create's key (printable ASCII) can never spell this input.
    return hashlib.sha256(f"note\x00{ticket_id}\x00{idempotency_key}".encode()).hexdigest()


def note_fingerprint(request: AddNote) -> str:
    canonical = json.dumps(request.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class TicketNotes:
    def __init__(
        self,
        *,
        tickets: TicketStore,
        connections: ConnectionStore,
        records: ServiceNowRecords,
        journal: JournalEntries,
        claims: IdempotencyClaims,
        policy: TicketingPolicy,
        clock: Clock,
        events: NoteEvents | None = None,
    ) -> None:
        self._tickets = tickets
        self._connections = connections
        self._records = records
        self._journal = journal
        self._claims = claims
        self._policy = policy
        self._clock = clock
        self._events = events

    async def notes(self, tenant_id: str, ticket_id: str) -> NoteList:
        """Newest first. A ticket without a record (`creating`, `failed`) has none.

        Raises:
            NotFound: no such ticket of the tenant.
            TicketDeletedInServiceNow: its record is gone.
        """
        ticket = await self._ticket(tenant_id, ticket_id)
        if ticket.status != "created" or not ticket.sys_id:
            return NoteList(source="journal", notes=[])
        return await self._read(await self._connection(ticket), ticket)

    async def add(
        self, caller: Caller, ticket_id: str, request: AddNote, key: str | None
    ) -> tuple[Note, bool]:
        """The note, and whether this request sent it (False: an earlier request with the key did).

        Raises:
            BadRequest: no or a malformed Idempotency-Key.
            IdempotencyKeyReused: the key came with another body.
            IdempotencyKeyInProgress: another request with the key is under way.
            TicketDeletedInServiceNow: the record is gone.
            TicketNotCreated: the ticket is `creating` or `failed`: it has no record.
            UpstreamUnavailable: not sent, or (`ambiguous`) maybe: repeat the request after Retry-After.
        """
        key_hash = note_key_hash(ticket_id, key)
        ticket = await self._ticket(caller.tenant_id, ticket_id)
        if ticket.status != "created" or not ticket.sys_id:
            raise TicketNotCreated(
                "The ticket has no ServiceNow record yet (it is being created, or its create failed)."
            )
        connection = await self._connection(ticket)
        fingerprint = note_fingerprint(request)
        claim = await self._claims.get(caller.tenant_id, key_hash)
        if claim is None:
            claim, ours = await self._new_claim(caller, key_hash, fingerprint, ticket_id)
            if ours:
                return await self._send(connection, ticket, request, claim), True
        return await self._repeat(connection, ticket, request, claim, fingerprint)

    async def _repeat(
        self,
        connection: Connection,
        ticket: Ticket,
        request: AddNote,
        claim: IdempotencyRecord,
        fingerprint: str,
    ) -> tuple[Note, bool]:
        if claim.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if claim.status == "completed":
            return _answer(claim, request), False
        now = self._clock.now()
        if claim.lease_until is not None and claim.lease_until > now:
            raise IdempotencyKeyInProgress(retry_after=math.ceil((claim.lease_until - now).total_seconds()))
        try:
            claim = await self._claims.replace(claim.model_copy(update={"lease_until": now + NOTE_LEASE}))
        except PreconditionFailed as exc:
            raise IdempotencyKeyInProgress() from exc
        found = await self._find(connection, ticket, request, since=claim.created_at - CLOCK_SLACK)
        if found is None:
            return await self._send(connection, ticket, request, claim), True
        # Answered from the claim, as every later repeat of the key will be.
        return _answer(await self._complete(claim, request), request), False

    async def _new_claim(
        self, caller: Caller, key_hash: str, fingerprint: str, ticket_id: str
    ) -> tuple[IdempotencyRecord, bool]:
        """Our new claim (True), or the one a concurrent request wrote first (False)."""
        record = new_claim(caller, key_hash, fingerprint, ticket_id, self._clock.now(), NOTE_LEASE)
        try:
            return await self._claims.claim(record), True
        except PreconditionFailed:
            current = await self._claims.get(caller.tenant_id, key_hash)
            if current is None:
                raise IdempotencyKeyInProgress() from None
            return current, False

    async def _send(
        self, connection: Connection, ticket: Ticket, request: AddNote, claim: IdempotencyRecord
    ) -> Note:
        field = _FIELDS[request.kind]
        try:
            await self._journal.add_journal_entry(connection, ticket.type, ticket.sys_id, field, request.text)
        except UpstreamUnavailable as exc:
            if not exc.ambiguous:
                await _quietly(self._claims.release(claim))
                raise
            settles = self._clock.now() + self._policy.settle_window
            kept = claim.model_copy(update={"lease_until": settles, "posted_at": self._clock.now()})
            await _quietly(self._claims.replace(kept))
            wait = math.ceil(self._policy.settle_window.total_seconds())
            message = "ServiceNow did not confirm the note. Repeat the request with the same Idempotency-Key."
            raise UpstreamUnavailable(message, retry_after=wait, ambiguous=True) from exc
        except NotFound as exc:
            await _quietly(self._claims.release(claim))
            raise TicketDeletedInServiceNow() from exc
        except AppError:  # refused, or never sent (a token, the connection)
            await _quietly(self._claims.release(claim))
            raise
        completed = await self._complete(claim, request)
        return _answer(completed, request)

    async def _complete(self, claim: IdempotencyRecord, request: AddNote) -> IdempotencyRecord:
        """The claim completed, and the note on the ticket's timeline: after ServiceNow took it,
        not atomically with it (a failure here loses the event, never the note)."""
        completed = claim.model_copy(update={"status": "completed", "completed_at": self._clock.now()})
        written = await _quietly(self._claims.replace(completed))
        if self._events is not None:
            note = NoteEvent(
                kind=request.kind, author=claim.created_by_name, at=claim.created_at, key=claim.key_hash
            )
            await _quietly(self._events.record_note(claim.tenant_id, claim.ticket_id, note))
        return written if isinstance(written, IdempotencyRecord) else completed

    async def _find(
        self, connection: Connection, ticket: Ticket, request: AddNote, since: datetime
    ) -> Note | None:
        listed = await self._read(connection, ticket)
        since = since.replace(microsecond=0)
        for note in listed.notes:
            if (
                note.kind == request.kind
                and note.text.strip() == request.text.strip()
                and note.created_at >= since
            ):
                return note
        return None

    async def _read(self, connection: Connection, ticket: Ticket) -> NoteList:
        query = f"element_id={ticket.sys_id}^elementINwork_notes,comments^ORDERBYDESCsys_created_on"
        fields = ["element", "value", "sys_created_on", "sys_created_by"]
        rows = await self._records.page(connection, JOURNAL, query, fields, limit=MAX_NOTES + 1)
        if rows:
            notes = [note for note in map(_from_row, rows[:MAX_NOTES]) if note is not None]
            return NoteList(source="journal", notes=notes, truncated=len(rows) > MAX_NOTES)
        display = await self._journal.journal_display_values(connection, ticket.type, ticket.sys_id)
        if display is None:
            raise TicketDeletedInServiceNow()
        notes = display_notes(display)
        if not notes and (display.work_notes.strip() or display.comments.strip()):
            # Entries exist, but not in the format we read: answering "no notes" would let a
            # repeat send its note again.
            raise UpstreamError(
                "ServiceNow hides sys_journal_field from the integration user, and the record's "
                "notes are not in the default date format (yyyy-MM-dd HH:mm:ss). Grant the user "
                "read access to sys_journal_field, or give it the default date format."
            )
        if not notes:
            return NoteList(source="journal", notes=[])
        return NoteList(source="display_values", notes=notes[:MAX_NOTES], truncated=len(notes) > MAX_NOTES)

    async def _ticket(self, tenant_id: str, ticket_id: str) -> Ticket:
        ticket = await self._tickets.get(tenant_id, ticket_id) if TICKET_ID.match(ticket_id) else None
        if ticket is None:
            raise NotFound("No such ticket.")
        if ticket.deleted_in_servicenow_at is not None:
            raise TicketDeletedInServiceNow()
        return ticket

    async def _connection(self, ticket: Ticket) -> Connection:
        connection = usable_connection(await self._connections.get(ticket.tenant_id))
        if connection.instance_url.rstrip("/") != ticket.instance_url.rstrip("/"):
            raise Conflict(
                "The ticket's record is in another ServiceNow instance than the one connected now."
            )
        return connection


def _from_row(row: ServiceNowRecord) -> Note | None:
    kind, created = _KINDS.get(str(row.get("element"))), parse_glide(str(row.get("sys_created_on") or ""))
    if kind is None or created is None:
        return None
    return Note(
        kind=kind,
        text=str(row.get("value") or ""),
        author=str(row.get("sys_created_by") or ""),
        created_at=created,
    )


def _answer(claim: IdempotencyRecord, request: AddNote) -> Note:
    """The note a claim's request added (a repeat carries the same body: its fingerprint matched)."""
    return Note(
        kind=request.kind,
        text=request.text,
        author=claim.created_by_name,
        created_at=claim.completed_at or claim.created_at,
    )


async def _quietly(write: Awaitable[object]) -> object:
    """Tidy-up after a failure or a success already had: the caller's answer does not depend on it."""
    try:
        return await write
    except AppError:
        return None

"""The HTTP models of a ticket's notes: the work notes and additional comments of its ServiceNow
record (`GET`/`POST /api/tickets/{id}/notes`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import AwareDatetime, Field, field_validator
from pydantic_core import PydanticCustomError

from shared.models import ApiModel

NoteKind = Literal["work_note", "comment"]
JournalField = Literal["work_notes", "comments"]
NoteSource = Literal["journal", "display_values"]

# ServiceNow's journal field (`journal_input`) takes long texts; the facts give no limit, so ours is
# the same as a ticket description's.
MAX_NOTE_LENGTH = 4000
MAX_NOTES = 100  # one Table API request reads at most this many entries
# C0 and C1 controls but newline and tab, and the bidirectional embeddings, overrides and isolates:
# a journal is an audit trail, and these make a note display as other than what it says.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Note(ApiModel):
    """One journal entry. `author` is ServiceNow's `sys_created_by` (a user name) when read from
    the journal, the full name the display value shows otherwise, and our caller's name in the
    answer to an add."""

    kind: NoteKind
    text: str
    author: str
    created_at: AwareDatetime  # UTC


class NoteList(ApiModel):
    """Newest first. `truncated`: the record has more than `MAX_NOTES` entries; the oldest are left out."""

    source: NoteSource
    notes: list[Note]
    truncated: bool = False


class AddNote(ApiModel):
    """POST /api/tickets/{id}/notes. Control characters other than newline and tab, and bidirectional
    overrides, are refused."""

    kind: NoteKind
    text: str = Field(min_length=1, max_length=MAX_NOTE_LENGTH)

    @field_validator("text")
    @classmethod
    def _printable(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise PydanticCustomError(
                "control_characters", "must not contain control or bidirectional override characters"
            )
        if not value.strip():
            raise PydanticCustomError("blank", "must not be blank")  # ServiceNow adds no blank note
        return value


@dataclass(frozen=True)
class JournalDisplay:
    """A record's journal fields as display values: each field's entries concatenated, newest
    first, stamped in the integration user's time zone; and the record's `sys_updated_on` as
    displayed in that zone and as stored (UTC), which gives the zone's offset."""

    work_notes: str = ""
    comments: str = ""
    updated_display: str = ""
    updated_value: str = ""

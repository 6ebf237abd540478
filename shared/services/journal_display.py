"""Reading a record's work notes and comments from its display values, for an integration user who
may read the record but not `sys_journal_field` (its own read ACL answers such a user an empty list,
not an error).

A journal field read with `sysparm_display_value=true` is its entries concatenated, newest first,
each `YYYY-MM-DD HH:MM:SS - Full Name (Work notes)\\n<text>\\n\\n` (`Additional comments` for
`comments`), stamped in the integration user's display time zone. The zone's offset is taken from the
record's `sys_updated_on`, read both as displayed and as stored (UTC); it is the offset at that one
moment, so an entry from the other side of a daylight-saving change is an hour off. When the
offset cannot be worked out the stamps are taken as UTC. An entry whose text itself holds a blank
line followed by a line shaped like a header is split there: the format leaves no way to tell.
"""

from __future__ import annotations

import re
from datetime import timedelta

from shared.note_models import JournalDisplay, Note, NoteKind
from shared.services.sync_marks import parse_glide

_HEADER = re.compile(
    r"(?:^|(?<=\n\n))(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) - (.*?) \((Work notes|Additional comments)\)\n"
)
_KINDS: dict[str, NoteKind] = {"Work notes": "work_note", "Additional comments": "comment"}


def zone_offset(display: JournalDisplay) -> timedelta:
    """The integration user's offset from UTC, to the minute; zero when it cannot be told."""
    shown, stored = parse_glide(display.updated_display), parse_glide(display.updated_value)
    if shown is None or stored is None:
        return timedelta(0)
    minutes = round((shown - stored).total_seconds() / 60)
    return timedelta(minutes=minutes) if abs(minutes) <= 14 * 60 else timedelta(0)


def parse_entries(text: str, offset: timedelta = timedelta(0)) -> list[Note]:
    """The entries of one journal field's display value, in its order (newest first)."""
    headers = list(_HEADER.finditer(text))
    notes: list[Note] = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        stamp = parse_glide(header.group(1))
        if stamp is None:
            continue
        body = text[header.end() : end]
        notes.append(
            Note(
                kind=_KINDS[header.group(3)],
                text=body[:-2] if body.endswith("\n\n") else body.rstrip("\n"),
                author=header.group(2),
                created_at=stamp - offset,
            )
        )
    return notes


def display_notes(display: JournalDisplay) -> list[Note]:
    """Both fields' entries, newest first (a stable merge: entries of one second keep their order)."""
    offset = zone_offset(display)
    notes = parse_entries(display.work_notes, offset) + parse_entries(display.comments, offset)
    return sorted(notes, key=lambda note: note.created_at, reverse=True)

"""`ServiceNowTables.add_journal_entry` and `journal_display_values` against the instance simulator:
a comment lands in `comments`, and both fields read back as display values the notes service parses,
also while the journal's ACL hides `sys_journal_field`."""

from __future__ import annotations

from shared.services.journal_display import display_notes
from tests.integration.test_servicenow_work_notes import Instance, instance  # noqa: F401 (fixture)


async def test_a_comment_and_a_work_note_read_back_as_display_values(instance: Instance) -> None:  # noqa: F811
    sys_id = await instance.incident()
    await instance.tables.add_journal_entry(
        instance.connection, "incident", sys_id, "comments", "Hello\nthere"
    )
    await instance.tables.add_work_note(instance.connection, "incident", sys_id, "internal")
    assert await instance.patches() == 2
    await instance.control.post("/__sim/acl/sys_journal_field", json={"readable": False})
    display = await instance.tables.journal_display_values(instance.connection, "incident", sys_id)
    assert display is not None
    assert display.updated_display == display.updated_value  # the simulated user's zone is UTC
    notes = display_notes(display)
    assert sorted((note.kind, note.text) for note in notes) == [
        ("comment", "Hello\nthere"),
        ("work_note", "internal"),
    ]


async def test_a_missing_record_has_no_display_values(instance: Instance) -> None:  # noqa: F811
    assert await instance.tables.journal_display_values(instance.connection, "incident", "0" * 32) is None

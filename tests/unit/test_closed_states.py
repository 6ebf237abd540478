"""Which ticket states end the ticket's work, for the Secure Score check."""

from __future__ import annotations

import pytest

from shared.ticket_states import closed_state


@pytest.mark.parametrize(
    ("table", "code", "closed"),
    [
        ("incident", "1", False), ("incident", "2", False), ("incident", "3", False),
        ("incident", "6", True), ("incident", "7", True), ("incident", "8", True),
        ("change_request", "-5", False), ("change_request", "-1", False), ("change_request", "0", False),
        ("change_request", "3", True), ("change_request", "4", True),
    ],
)  # fmt: skip
def test_out_of_the_box_states(table: str, code: str, closed: bool) -> None:
    assert closed_state(table, code) is closed


def test_a_state_the_instance_added_is_told_by_its_label() -> None:
    labels = {
        "incident": {
            "9": "Closed - Duplicate",
            "10": "Awaiting Vendor",
            "11": "Cancelled by user",
            "13": "Incomplete",
        }
    }
    assert closed_state("incident", "9", labels)
    assert not closed_state("incident", "10", labels)
    assert closed_state("incident", "11", labels)
    assert not closed_state("incident", "12", labels)  # unknown code, no label: not closed
    assert not closed_state("incident", "13", labels)  # a word, not a part of one


def test_a_relabelled_out_of_the_box_state_keeps_its_meaning() -> None:
    labels = {"incident": {"2": "Closed soon", "6": "Fixed"}}
    assert not closed_state("incident", "2", labels)
    assert closed_state("incident", "6", labels)

"""Mapping Graph's secureScoreControlProfile JSON to ImprovementAction (pure, no I/O)."""

from __future__ import annotations

import pytest

from localdev.entra.server import load_actions
from shared.errors import UpstreamError
from shared.graph import to_improvement_action


def test_every_sample_profile_maps_and_device_becomes_devices() -> None:
    actions = [to_improvement_action(raw) for raw in load_actions()]
    by_graph_category = {
        raw["controlCategory"]: a.control_category for raw, a in zip(load_actions(), actions, strict=True)
    }
    assert by_graph_category == {
        "Identity": "Identity",
        "Data": "Data",
        "Device": "Devices",
        "Apps": "Apps",
        "Infrastructure": "Infrastructure",
    }
    assert len({a.id for a in actions}) == len(actions) >= 20


def test_an_unknown_category_maps_to_none_rather_than_failing() -> None:
    action = to_improvement_action(
        {"id": "NewThing", "title": "A new kind of control", "controlCategory": "Quantum"}
    )
    assert action.control_category is None
    assert action.threats == ()


def test_a_profile_without_a_title_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        to_improvement_action({"id": "Broken"})


def _profile(updates: object) -> dict[str, object]:
    return {
        "id": "AdminMFAV2",
        "title": "Require MFA for administrative roles",
        "controlStateUpdates": updates,
    }


def _update(state: object, when: object, comment: object = "") -> dict[str, object]:
    return {"assignedTo": "", "comment": comment, "state": state, "updatedBy": "x", "updatedDateTime": when}


def test_the_control_state_is_the_newest_update_and_its_comment() -> None:
    action = to_improvement_action(
        _profile(
            [
                _update("Default", "2030-01-01T08:00:00.0000000Z", "first"),
                _update("ThirdParty", "2030-01-03T08:00:00.1234567Z", "INC0010023 https://x"),
                _update("Reviewed", "2030-01-02T08:00:00Z", "older, listed last"),
            ]
        )
    )
    assert (action.control_state, action.control_state_comment) == ("ThirdParty", "INC0010023 https://x")
    body = action.model_dump(by_alias=True)
    assert (body["controlState"], body["controlStateComment"]) == ("ThirdParty", "INC0010023 https://x")


def test_of_updates_made_at_the_same_instant_the_later_listed_is_newest() -> None:
    when = "2030-01-03T08:00:00Z"
    action = to_improvement_action(_profile([_update("Ignored", when), _update("Reviewed", when)]))
    assert action.control_state == "Reviewed"


def test_times_with_an_offset_or_none_compare_as_utc() -> None:
    action = to_improvement_action(
        _profile(
            [_update("Reviewed", "2030-01-03T09:00:00"), _update("Ignored", "2030-01-03T10:30:00+02:00")]
        )
    )
    assert action.control_state == "Reviewed"  # 09:00 UTC is after 08:30 UTC


def test_without_readable_times_the_last_update_is_newest() -> None:
    action = to_improvement_action(
        _profile([_update("Reviewed", None, "a"), _update("ThirdParty", "yesterday", "b")])
    )
    assert (action.control_state, action.control_state_comment) == ("ThirdParty", "b")


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "Reviewed",
        42,
        ["ThirdParty"],
        {"comment": "no state", "updatedDateTime": "2030-01-09T00:00:00Z"},
        {"state": "", "updatedDateTime": "2030-01-09T00:00:00Z"},
        {"state": "  ", "updatedDateTime": "2030-01-09T00:00:00Z"},
        {"state": 3, "updatedDateTime": "2030-01-09T00:00:00Z"},
    ],
)
def test_a_malformed_update_is_skipped_not_fatal(bad: object) -> None:
    good = _update("ThirdParty", "2030-01-02T00:00:00Z", "INC0010023")
    for updates in ([good, bad], [bad, good]):
        action = to_improvement_action(_profile(updates))
        assert (action.control_state, action.control_state_comment) == ("ThirdParty", "INC0010023")
    assert to_improvement_action(_profile([bad])).control_state is None


@pytest.mark.parametrize("updates", [None, [], {"state": "Reviewed"}, "Reviewed", 7])
def test_no_usable_updates_leave_the_state_unknown(updates: object) -> None:
    raw = _profile(updates)
    action = to_improvement_action(raw)
    assert (action.control_state, action.control_state_comment) == (None, None)
    del raw["controlStateUpdates"]
    assert to_improvement_action(raw).control_state is None


@pytest.mark.parametrize("comment", [None, 5, {"text": "x"}])
def test_a_comment_that_is_not_text_is_dropped_but_the_state_kept(comment: object) -> None:
    action = to_improvement_action(_profile([_update("Reviewed", "2030-01-02T00:00:00Z", comment)]))
    assert (action.control_state, action.control_state_comment) == ("Reviewed", None)


def test_the_sample_profiles_states_are_their_newest_updates() -> None:
    states = {raw["id"]: to_improvement_action(raw).control_state for raw in load_actions()}
    assert states["exo_mailboxaudit"] == "Reviewed"
    assert states["DLPEnabled"] is None

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

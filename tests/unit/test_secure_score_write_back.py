"""The write-back of tickets to their Secure Score controls, with fakes of its ports: one PATCH per
distinct comment, the control's state kept, device controls skipped, failures recorded, a 429
pausing the tenant's Graph work, an unconfirmed PATCH never sent blindly again; and the pacing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from shared.errors import UpstreamError, UpstreamUnavailable
from shared.remediation import RemediationChange
from shared.services.remediation_check import RemediationOutcome
from shared.services.remediation_write_back import SCID_REFUSED, WRITE_BACK_PER_MINUTE, Pacer
from shared.services.ticket_queries import record_url
from tests.fakes.clock import FakeClock
from tests.fakes.remediation import INSTANCE, TENANT, RemediationWorld, action
from tests.fakes.secure_score import ControlPatch, throttled


@pytest.fixture
def world() -> RemediationWorld:
    world = RemediationWorld.create(action("AdminMFAV2"), action("DLPEnabled", 8.0), action("scid_2000", 9.0))
    world.connect(secure_score_write_back=True)
    return world


async def check(world: RemediationWorld) -> RemediationOutcome:
    return await world.check().check_tenant(world.connection())


def comment(world: RemediationWorld, ticket_id: str, state_name: str) -> str:
    row = world.row(ticket_id)
    return f"ServiceNow {row.number} ({state_name}): {record_url(INSTANCE, row.type, row.sys_id)}"


async def test_one_patch_per_distinct_comment_and_the_state_kept(world: RemediationWorld) -> None:
    world.set_state("DLPEnabled", "ThirdParty", "Our DLP vendor")
    mfa, dlp = world.ticket("AdminMFAV2"), world.ticket("DLPEnabled")
    outcome = await check(world)

    assert sorted(world.graph.patches, key=lambda p: p.control_id) == [
        ControlPatch(TENANT, "AdminMFAV2", comment(world, mfa, "New"), "Default"),  # no state yet
        ControlPatch(TENANT, "DLPEnabled", comment(world, dlp, "New"), "ThirdParty"),  # kept, not set
    ]
    assert (outcome.patched, outcome.failed) == (2, 0)
    row = world.row(mfa)
    assert (row.write_back_comment, row.write_back_at, row.write_back_error) == (
        comment(world, mfa, "New"),
        world.clock.now(),
        None,
    )

    world.clock.advance(days=1)
    await check(world)
    assert len(world.graph.attempts) == 2  # the same comments: nothing sent

    world.move(mfa, "6")
    world.clock.advance(days=1)
    await check(world)
    assert world.graph.patches[-1] == ControlPatch(
        TENANT, "AdminMFAV2", comment(world, mfa, "Resolved"), "Default"
    )
    assert len(world.graph.attempts) == 3


async def test_the_newest_ticket_of_an_action_makes_the_comment(world: RemediationWorld) -> None:
    older = world.ticket("AdminMFAV2", "7")
    newer = world.ticket("AdminMFAV2", "2")
    await check(world)
    [patch] = world.graph.patches
    assert patch.comment == comment(world, newer, "In Progress")
    assert world.row(newer).write_back_comment == patch.comment
    assert world.row(older).write_back_comment is None

    world.move(older, "8")  # an older ticket's change does not change the comment
    world.clock.advance(days=1)
    await check(world)
    assert len(world.graph.attempts) == 1


async def test_the_tenants_state_names_are_in_the_comment(world: RemediationWorld) -> None:
    world.connect(secure_score_write_back=True, state_names={"incident": {"2": "Being fixed"}})
    ticket = world.ticket("AdminMFAV2", "2")
    await check(world)
    assert world.graph.patches[0].comment == comment(world, ticket, "Being fixed")


async def test_nothing_is_written_back_while_the_switch_is_off(world: RemediationWorld) -> None:
    world.connect(secure_score_write_back=False)
    ticket = world.ticket("AdminMFAV2")
    world.ticket("scid_2000")
    await check(world)
    assert world.graph.attempts == []
    assert world.row(ticket).remediation_status is not None
    assert world.row(ticket).write_back_comment is None
    assert all(t.write_back_error is None for t in world.tickets.rows.values())


async def test_device_controls_are_skipped_and_their_tickets_say_why(world: RemediationWorld) -> None:
    first, second = world.ticket("scid_2000"), world.ticket("scid_2000")
    await check(world)
    assert world.graph.attempts == []
    assert world.row(first).write_back_error == world.row(second).write_back_error == SCID_REFUSED
    assert SCID_REFUSED == "Device controls (scid_) cannot be updated through Microsoft Graph."


async def test_a_comment_graph_already_has_is_recorded_not_sent(world: RemediationWorld) -> None:
    ticket = world.ticket("AdminMFAV2")
    world.set_state("AdminMFAV2", "Default", comment(world, ticket, "New"))
    outcome = await check(world)
    assert world.graph.attempts == []
    assert (outcome.found, world.row(ticket).write_back_comment) == (1, comment(world, ticket, "New"))


async def test_an_unconfirmed_patch_is_not_sent_again_and_the_next_check_finds_it(
    world: RemediationWorld,
) -> None:
    world.ticket("DLPEnabled")
    ticket = world.ticket("AdminMFAV2")  # the newest: its action goes first
    lost = UpstreamUnavailable("Graph did not confirm the update", retry_after=30, ambiguous=True)
    world.graph.land_then_fail(lost)
    outcome = await check(world)

    assert len(world.graph.attempts) == 1  # once, and the run's Graph work stopped there
    assert outcome.failed == 1
    assert world.row(ticket).write_back_error == "Graph did not confirm the update"
    assert world.row(ticket).write_back_comment is None
    assert world.connection().graph_not_before == world.clock.now() + timedelta(seconds=30)

    world.clock.advance(days=1)
    outcome = await check(world)
    assert sorted(p.control_id for p in world.graph.attempts) == ["AdminMFAV2", "DLPEnabled"]  # no MFA again
    assert outcome.found == 1
    assert (world.row(ticket).write_back_comment, world.row(ticket).write_back_error) == (
        comment(world, ticket, "New"),
        None,
    )


async def test_an_unconfirmed_patch_that_did_not_land_is_sent_by_the_next_check(
    world: RemediationWorld,
) -> None:
    ticket = world.ticket("AdminMFAV2")
    world.graph.fail_next(UpstreamUnavailable("timeout", retry_after=30, ambiguous=True))
    await check(world)
    world.clock.advance(days=1)
    await check(world)
    assert len(world.graph.attempts) == 2
    assert [p.comment for p in world.graph.patches] == [comment(world, ticket, "New")]
    assert world.row(ticket).write_back_error is None


async def test_a_throttled_tenant_pauses_its_graph_work_until_retry_after(world: RemediationWorld) -> None:
    dlp, mfa = world.ticket("DLPEnabled"), world.ticket("AdminMFAV2")  # the newest action goes first
    world.graph.fail_next(throttled(120))
    outcome = await check(world)

    assert len(world.graph.attempts) == 1  # DLPEnabled not tried
    paused_until = world.clock.now() + timedelta(seconds=120)
    assert outcome.paused_until == world.connection().graph_not_before == paused_until
    assert "429" in (world.row(mfa).write_back_error or "")
    assert world.row(dlp).remediation_status is not None  # the check's results are still written

    world.clock.advance(seconds=60)
    reads = world.actions.score_calls
    skipped = await check(world)
    assert skipped.skipped is not None
    assert world.actions.score_calls == reads

    world.clock.advance(seconds=61)
    await check(world)
    assert sorted(p.control_id for p in world.graph.patches) == ["AdminMFAV2", "DLPEnabled"]
    assert world.row(mfa).write_back_error is None


async def test_a_refused_write_back_is_recorded_and_the_others_go_on(world: RemediationWorld) -> None:
    dlp, mfa = world.ticket("DLPEnabled"), world.ticket("AdminMFAV2")  # the newest action goes first
    world.graph.fail_next(UpstreamError("an admin must grant the app SecurityEvents.ReadWrite.All"))
    outcome = await check(world)
    assert "SecurityEvents.ReadWrite.All" in (world.row(mfa).write_back_error or "")
    assert world.row(dlp).write_back_comment is not None
    assert (outcome.failed, outcome.patched, world.connection().graph_not_before) == (1, 1, None)

    world.clock.advance(days=1)
    await check(world)
    assert world.row(mfa).write_back_comment is not None
    assert world.row(mfa).write_back_error is None


async def test_each_row_is_written_right_after_its_patch(world: RemediationWorld) -> None:
    world.ticket("DLPEnabled")
    world.ticket("AdminMFAV2")
    events: list[str] = []
    patch, write = world.graph.update_control, world.rows.write

    async def patching(tenant_id: str, control_id: str, *, comment: str, state: str) -> None:
        events.append(f"PATCH {control_id}")
        await patch(tenant_id, control_id, comment=comment, state=state)

    async def writing(tenant_id: str, changes: Sequence[RemediationChange]) -> int:
        events.append(f"write {len(changes)} row(s)")
        return await write(tenant_id, changes)

    world.graph.update_control = patching  # type: ignore[method-assign]
    world.rows.write = writing  # type: ignore[method-assign]
    await check(world)
    assert events == [
        "PATCH AdminMFAV2",
        "write 1 row(s)",  # recorded before the next PATCH leaves
        "PATCH DLPEnabled",
        "write 1 row(s)",
        "write 2 row(s)",  # the check's results
    ]


async def test_no_patch_starts_after_the_deadline(world: RemediationWorld) -> None:
    world.ticket("AdminMFAV2")
    await world.check().check_tenant(world.connection(), deadline=world.clock.now())
    assert world.graph.attempts == []


async def test_write_back_of_changed_tickets_reads_one_profile_per_changed_comment(
    world: RemediationWorld,
) -> None:
    mfa, dlp = world.ticket("AdminMFAV2"), world.ticket("DLPEnabled")
    await check(world)
    world.rows.requests.clear()
    world.move(mfa, "2")
    service = world.check()

    outcome = await service.write_back_changed(world.connection(), [mfa])

    assert world.graph.patches[-1].comment == comment(world, mfa, "In Progress")
    assert (outcome.patched, world.actions.calls) == (1, 1)
    assert world.rows.requests == ["read", "merge"]
    await service.write_back_changed(world.connection(), [mfa, dlp])  # nothing new
    assert (len(world.graph.attempts), world.actions.calls) == (3, 1)


async def test_write_back_of_changed_tickets_costs_nothing_with_the_switch_off(
    world: RemediationWorld,
) -> None:
    world.connect(secure_score_write_back=False)
    ticket = world.ticket("AdminMFAV2")
    outcome = await world.check().write_back_changed(world.connection(), [ticket])
    assert outcome.skipped is not None
    assert (world.rows.requests, world.graph.attempts, world.actions.calls) == ([], [], 0)


async def test_write_back_of_changed_tickets_waits_for_graph_too(world: RemediationWorld) -> None:
    ticket = world.ticket("AdminMFAV2")
    world.connect(secure_score_write_back=True, graph_not_before=world.clock.now() + timedelta(minutes=1))
    await world.check().write_back_changed(world.connection(), [ticket])
    assert (world.rows.requests, world.graph.attempts) == ([], [])


async def test_the_pacer_keeps_to_its_limit_per_minute() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, WRITE_BACK_PER_MINUTE)
    for _ in range(WRITE_BACK_PER_MINUTE):
        await pacer.wait()
    assert clock.slept == []
    await pacer.wait()
    assert clock.slept == [60.0]
    assert WRITE_BACK_PER_MINUTE < 150  # Graph's limit per app and tenant


async def test_a_new_ticket_is_written_back_by_its_create_when_the_switch_is_on(
    world: RemediationWorld,
) -> None:
    ticket_id = world.ticket("AdminMFAV2")
    await world.check().ticket_created(world.connection(), world.row(ticket_id))
    assert world.graph.patches == [
        ControlPatch(TENANT, "AdminMFAV2", comment(world, ticket_id, "New"), "Default")
    ]
    assert world.row(ticket_id).write_back_comment == comment(world, ticket_id, "New")
    await check(world)  # the daily check finds it written: nothing sent again
    assert len(world.graph.attempts) == 1


async def test_a_new_ticket_is_not_written_back_with_the_switch_off_or_without_an_action(
    world: RemediationWorld,
) -> None:
    plain = world.ticket(None)
    await world.check().ticket_created(world.connection(), world.row(plain))
    world.connect(secure_score_write_back=False)
    made = world.ticket("AdminMFAV2")
    await world.check().ticket_created(world.connection(), world.row(made))
    assert world.graph.attempts == []


async def test_a_failed_write_back_at_creation_never_raises_and_the_check_retries_it(
    world: RemediationWorld,
) -> None:
    made = world.ticket("AdminMFAV2")
    world.graph.fail_next(throttled(30))
    await world.check().ticket_created(world.connection(), world.row(made))  # does not raise
    assert world.graph.patches == []
    assert world.row(made).write_back_error is not None  # visible on the ticket
    assert world.connection().graph_not_before == world.clock.now() + timedelta(seconds=30)
    world.clock.advance(days=1)
    await check(world)
    assert [p.control_id for p in world.graph.patches] == ["AdminMFAV2"]


async def test_a_failed_write_back_is_retried_by_the_next_run_though_nothing_changed(
    world: RemediationWorld,
) -> None:
    made = world.ticket("AdminMFAV2")
    world.graph.fail_next(UpstreamError("Graph refused it."))
    await world.check().write_back_changed(world.connection(), [made])
    assert world.row(made).write_back_error is not None
    await world.check().write_back_changed(world.connection(), [])  # a run that changed nothing
    assert [p.control_id for p in world.graph.patches] == ["AdminMFAV2"]
    assert world.row(made).write_back_error is None


async def test_a_device_controls_refusal_is_not_retried(world: RemediationWorld) -> None:
    world.ticket("scid_2000")
    await check(world)
    await world.check().write_back_changed(world.connection(), [])
    assert world.graph.attempts == []

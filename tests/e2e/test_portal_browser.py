"""The portal in a real browser (Chromium through Playwright) against the stack: sign in, connect
through the simulator's consent page, share an improvement action, watch its state change after a
sync, rename a state, test, re-authorize and remove the connection; a bad value is explained next
to its field; and the Secure Score check's flags lead from the home card to the flagged tickets and
the ticket's remediation, and the write-back switch is set. Each screen is saved to
`docs/screenshots/` (the README shows them).

Skipped when `/usr/bin/chromium` or the `playwright` package is missing (`make test` says so).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from shared.settings import get_settings
from tests.e2e import api
from tests.e2e.conftest import REPO_ROOT, Stack
from tests.e2e.sync_api import update_record
from tests.e2e.tickets_api import WRITER, connected_tenant, create, ticket_body

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000

if not CHROMIUM.exists():
    if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":  # CI: .ci/run installed it, so this is a fault
        raise RuntimeError(f"{CHROMIUM} is missing, and REQUIRE_BROWSER_TESTS=1 says browser tests must run")
    pytest.skip(f"browser tests skipped: {CHROMIUM} is not installed", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests skipped: no playwright")
expect = playwright_api.expect


@pytest_asyncio.fixture
async def page(stack: Stack, app_env: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    # The OAuth callback comes back to the portal this host serves.
    app_env.setenv("PORTAL_URL", f"{stack.url}/api/portal")
    get_settings.cache_clear()
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield await context.new_page()
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Any, stack: Stack, tenant: str) -> None:
    await page.goto(f"{stack.url}/api/portal")
    await page.get_by_role("button", name="Sign in as").click()
    await page.get_by_label("Tenant").fill(tenant)
    await page.get_by_label("User").fill("Ada Admin")
    await page.get_by_label("Role").select_option("Connector.Admin")
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def allow_in_servicenow(page: Any) -> None:
    await page.get_by_role("button", name="Allow").click()
    await expect(page.get_by_text("ServiceNow is connected.")).to_be_visible()


def card(page: Any, heading: str) -> Any:
    return page.get_by_role("region", name=re.compile(heading))


async def test_admin_connects_shares_tracks_and_removes(stack: Stack, page: Any) -> None:
    tenant = stack.new_tenant()
    simulator = stack.simulator
    await sign_in(page, stack, tenant)
    await expect(page.get_by_role("button", name="Connect to ServiceNow")).to_be_visible()
    await shot(page, "home-not-connected")

    await page.get_by_role("button", name="Connect to ServiceNow").click()
    await page.get_by_label("Instance").fill(simulator.url)
    await page.get_by_label("Client ID").fill(simulator.client_id)
    await page.get_by_label("Client secret").fill(simulator.client_secret)
    await page.get_by_role("button", name="Authorize").click()
    await allow_in_servicenow(page)
    await expect(page.get_by_label("Client secret")).to_have_value("")
    await shot(page, "servicenow-configuration")

    await page.get_by_role("navigation").get_by_role("link", name="Improvement actions").click()
    share = page.get_by_role("button", name=re.compile(r"^Share ")).first
    await share.click()
    await page.get_by_role("menuitem", name="ServiceNow").click()
    form = page.get_by_role("form", name=re.compile("to ServiceNow$"))
    await expect(form.get_by_label("Name")).not_to_have_value("")
    await form.get_by_label("Priority").select_option("2")
    await form.get_by_label("Due date").fill("2030-01-31")
    await shot(page, "share-to-servicenow")
    await form.get_by_role("button", name="Send to ServiceNow").click()
    number = form.get_by_role("link", name=re.compile(r"^INC\d+$"))
    await expect(number).to_be_visible()
    await shot(page, "improvement-actions")

    await page.get_by_role("navigation").get_by_role("link", name="Home").click()
    incidents = card(page, "Incident management")
    await expect(card(page, "Change management")).to_be_visible()
    await expect(incidents.get_by_role("listitem").filter(has_text="New")).to_have_text(
        re.compile(r"1\s+New")
    )
    await expect(incidents.get_by_role("link", name=re.compile(r"^INC\d+$"))).to_be_visible()

    tickets = (await stack.client.get("/api/tickets", headers=stack.as_admin(tenant))).json()["items"]
    await update_record(simulator, "incident", tickets[0]["sysId"], state="2")
    await page.get_by_role("button", name="Sync now").click()
    await expect(incidents.get_by_role("listitem").filter(has_text="In Progress")).to_have_text(
        re.compile(r"1\s+In Progress")
    )
    await shot(page, "home")

    await incidents.get_by_role("link", name="Manage ServiceNow configuration").click()
    await page.get_by_label("In Progress (state 2)").fill("Being fixed")
    await page.get_by_role("button", name="Save state names").click()
    await expect(page.get_by_label("In Progress (state 2)")).to_have_value("Being fixed")
    # The save renders the screen again: a click before that ends would land on the old screen.
    await page.wait_for_load_state("networkidle")

    await page.get_by_role("button", name="Test connection").click()
    results = page.locator(".checks, [role=alert]")
    await expect(results.first).to_be_visible()
    await shot(page, "servicenow-configuration-test")

    await page.get_by_role("button", name="Re-authorize").click()
    await allow_in_servicenow(page)

    await page.get_by_role("navigation").get_by_role("link", name="All tickets").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=tickets[0]["number"]))
    await expect(row).to_contain_text("Being fixed")
    await expect(row).to_contain_text("Ada Admin")
    await shot(page, "all-tickets")

    await row.get_by_role("link", name=tickets[0]["name"]).click()
    note_form = page.get_by_role("form", name="Add a note")
    await note_form.get_by_label("Text").fill("Pilot group done.\nEveryone next.")
    await note_form.get_by_role("button", name="Add note").click()
    await expect(page.locator(".note-list")).to_contain_text("Pilot group done.")
    await page.get_by_role("navigation").get_by_role("link", name="All tickets").click()

    await page.get_by_role("navigation").get_by_role("link", name="Home").click()
    await expect(incidents.get_by_role("listitem").filter(has_text="Being fixed")).to_be_visible()
    await incidents.get_by_role("link", name="Manage ServiceNow configuration").click()
    await page.get_by_role("button", name="Remove connection").click()
    await expect(page.get_by_role("alertdialog")).to_contain_text("revokes its tokens")
    await page.get_by_role("button", name="Remove", exact=True).click()
    await expect(page.get_by_role("button", name="Connect to ServiceNow")).to_be_visible()
    assert (await stack.client.get("/api/provisioning", headers=stack.as_admin(tenant))).json()[
        "status"
    ] == "not_configured"


async def test_a_bad_value_is_explained_next_to_its_field(stack: Stack, page: Any) -> None:
    tenant = stack.new_tenant()
    await sign_in(page, stack, tenant)
    await page.get_by_role("button", name="Connect to ServiceNow").click()
    bad = {"instance": "not an instance!", "clientId": "abc", "clientSecret": "s"}
    await page.get_by_label("Instance").fill(bad["instance"])
    await page.get_by_label("Client ID").fill(bad["clientId"])
    await page.get_by_label("Client secret").fill(bad["clientSecret"])
    await page.get_by_role("button", name="Authorize").click()

    answer = await stack.client.put("/api/provisioning", json=bad, headers=stack.as_admin(tenant))
    [problem] = [f for f in answer.json()["error"]["fields"] if f["field"] == "instance"]
    instance = page.get_by_label("Instance")
    await expect(instance).to_have_attribute("aria-invalid", "true")
    message = page.locator(f"#{await instance.get_attribute('id')}-error")
    await expect(message).to_have_text(problem["message"])
    await expect(page.get_by_role("alert")).to_contain_text("request id")
    await shot(page, "servicenow-configuration-error")


async def test_remediation_flags_lead_from_the_home_card_to_the_ticket(stack: Stack, page: Any) -> None:
    stack.portal_url = f"{stack.url}/api/portal"  # where `page` has the callback return (connected by API)
    tenant = await connected_tenant(stack)
    action = {"improvementActionId": "AdminMFAV2", "recommendationSource": "microsoft"}
    closed = (await create(stack, tenant, ticket_body(name="Require MFA for admins", **action))).json()
    await create(stack, tenant, ticket_body(name="Block legacy sign-in"))
    device = (
        await create(stack, tenant, ticket_body(name="Onboard devices", improvementActionId="scid_2000"))
    ).json()
    checked = datetime.now(UTC).replace(microsecond=0)
    # The daily check's verdict, written onto the rows as it stores them.
    await stack.merge_row("tickets", {
        "PartitionKey": tenant, "RowKey": closed["id"], "State": "7", "ClosedAt": checked - timedelta(days=8),
        "RemediationStatus": "in_progress", "RemediationScore": 0.0, "RemediationMaxScore": 10.0,
        "RemediationCheckedAt": checked, "ClosedWithoutRemediation": True,
        "WriteBackComment": f"ServiceNow incident {closed['number']} (Closed): {closed['url']}",
        "WriteBackAt": checked - timedelta(days=8),
    })  # fmt: skip
    await stack.merge_row("tickets", {
        "PartitionKey": tenant, "RowKey": device["id"],
        "WriteBackError": "Device controls (scid_) cannot be updated through Microsoft Graph.",
    })  # fmt: skip

    await sign_in(page, stack, tenant)
    incidents = card(page, "Incident management")
    flags = incidents.get_by_role("list", name="Remediation flags")
    flagged = flags.get_by_role("link", name=re.compile("Closed without remediation"))
    await expect(flagged).to_have_text(re.compile(r"^1\s+Closed without remediation$"))
    await expect(flags.get_by_role("link", name=re.compile("Regressed"))).to_have_text(
        re.compile(r"^0\s+Regressed$")
    )
    await shot(page, "home-remediation-flags")

    await flagged.click()
    await expect(page.get_by_label("Remediation flag")).to_have_value("closedWithoutRemediation")
    rows = page.get_by_role("table", name="Tickets").get_by_role("row")
    await expect(rows).to_have_count(2)  # the header and the one flagged ticket
    row = rows.filter(has=page.get_by_role("link", name=closed["number"]))
    await expect(row).to_contain_text("In progress")
    await expect(row.locator(".badge")).to_have_text("Closed without remediation")
    await shot(page, "tickets-flagged")

    await row.get_by_role("link", name="Require MFA for admins").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Require MFA for admins")
    remediation = page.get_by_role("region", name="Secure Score remediation")
    await expect(remediation).to_contain_text("In progress")
    await expect(remediation).to_contain_text("0 of 10")
    await expect(remediation.get_by_role("list", name="Remediation flags")).to_contain_text(
        "Closed without remediation"
    )
    await expect(remediation).to_contain_text(f"ServiceNow incident {closed['number']} (Closed)")
    await shot(page, "ticket-remediation")
    timeline = page.get_by_role("region", name="Timeline")  # oldest first: the create
    await expect(timeline.get_by_role("listitem").first).to_contain_text(f"Created by {WRITER}")

    await page.goto(f"{stack.url}/api/portal#/ticket?id={device['id']}")
    device_view = page.get_by_role("region", name="Secure Score remediation")
    await expect(device_view).to_contain_text("Not checked yet")
    await expect(device_view).to_contain_text("Device controls (scid_) cannot be updated")

    await page.get_by_role("navigation").get_by_role("link", name="Home").click()
    await incidents.get_by_role("link", name="Manage ServiceNow configuration").click()
    switch = page.get_by_role("switch", name="Write ticket states back to Secure Score")
    await expect(switch).not_to_be_checked()
    section = page.get_by_role("region", name="Secure Score", exact=True)
    await expect(section).to_contain_text("SecurityEvents.ReadWrite.All")
    await switch.click()
    await expect(page.get_by_text("Write-back is on.")).to_be_visible()
    await expect(switch).to_be_checked()
    assert (await api.status(stack, tenant))["secureScore"]["writeBack"] is True
    await section.screenshot(path=str(SCREENSHOTS / "secure-score-switch.png"))  # the card: the page is long
    await page.reload()
    await expect(page.get_by_role("switch", name="Write ticket states back to Secure Score")).to_be_checked()
    notes = page.get_by_role("switch", name="Add a work note when an action is done while its ticket is open")
    await expect(notes).not_to_be_checked()
    await notes.click()
    await expect(page.get_by_text("Work notes is on.")).to_be_visible()
    status = (await api.status(stack, tenant))["secureScore"]
    assert (status["workNotes"], status["writeBack"]) == (True, True)  # each switch saves only itself


async def test_an_admin_previews_saves_and_disables_a_rule(stack: Stack, page: Any) -> None:
    stack.portal_url = f"{stack.url}/api/portal"
    tenant = await connected_tenant(stack)
    await sign_in(page, stack, tenant)
    await expect(page.get_by_role("button", name="Sync now")).to_be_visible()  # the home screen is done
    await page.get_by_role("link", name="Rules").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Rules")
    await page.get_by_role("button", name="New rule").click()
    await page.get_by_label("Rule id").fill("identity")
    await page.get_by_label("Name").fill("Identity actions")
    await page.get_by_label("Identity").check()
    await page.get_by_label("Only these action ids").fill("AdminMFAV2, MFARegistrationV2")
    await page.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("region", name=re.compile("Would create"))
    await expect(preview).to_contain_text("AdminMFAV2")
    await shot(page, "rules-preview")
    assert (await stack.client.get("/api/tickets", headers=stack.as_admin(tenant))).json()["items"] == []

    await page.get_by_label("At most this many tickets a day").fill("0")
    await page.get_by_role("button", name="Save").click()
    cap = page.get_by_label("At most this many tickets a day")
    await expect(cap).to_have_attribute("aria-invalid", "true")
    await cap.fill("10")
    await page.get_by_role("button", name="Save").click()
    table = page.get_by_role("table", name="Rules")
    await expect(table).to_contain_text("Identity actions")
    await expect(table).to_contain_text("Not run yet")
    await shot(page, "rules")

    saved = "/api/rules/identity"
    async with page.expect_response(lambda r: r.url.endswith(saved) and r.request.method == "PUT"):
        await table.get_by_label("Enabled: Identity actions").uncheck()
    answer = await stack.client.get("/api/rules/identity", headers=stack.as_admin(tenant))
    assert answer.json()["enabled"] is False
    assert answer.json()["maxPerRun"] == 10


async def test_an_admin_turns_on_push_and_sees_the_key_once(stack: Stack, page: Any) -> None:
    stack.portal_url = f"{stack.url}/api/portal"
    tenant = await connected_tenant(stack)
    await sign_in(page, stack, tenant)
    await expect(page.get_by_role("button", name="Sync now")).to_be_visible()  # the home screen is done
    await page.goto(f"{stack.url}/api/portal#/setup")
    push = card(page, "Push from ServiceNow")
    await expect(push).to_contain_text("Off")
    await push.get_by_role("button", name="Turn on push").click()
    key = push.locator(".push-key")
    await expect(key).to_be_visible()
    await expect(push.get_by_label("Script for incident")).to_contain_text("X-Connector-Signature")
    await expect(push.locator(".push-url")).to_contain_text("/api/servicenow/hooks/")
    await expect(push.locator("dd").first).to_have_text("On")
    shown_key = await key.text_content()
    await shot(page, "servicenow-push")
    await push.get_by_role("button", name="Show the Business Rules").click()
    await expect(push.get_by_label("Script for change_request")).to_be_visible()
    await expect(push.locator(".push-key")).to_have_count(0)  # the key is shown once
    assert shown_key
    assert shown_key not in (await push.inner_text())


async def test_a_screen_left_while_loading_does_not_write_into_the_next(stack: Stack, page: Any) -> None:
    stack.portal_url = f"{stack.url}/api/portal"
    tenant = await connected_tenant(stack)
    await sign_in(page, stack, tenant)
    await expect(page.get_by_role("button", name="Sync now")).to_be_visible()
    await page.get_by_role("link", name="Rules").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Rules")

    async def slow(route: Any) -> None:
        await asyncio.sleep(1.5)
        await route.continue_()

    await page.route("**/api/tickets/summary", slow)
    await page.get_by_role("link", name="Home").click()  # Home waits for its summary ...
    await page.get_by_role("link", name="Rules").click()  # ... while the user moves on
    await expect(page.get_by_role("heading", level=1)).to_have_text("Rules")
    await asyncio.sleep(2.5)  # the summary has come back to the Home screen by now
    assert await page.get_by_text("Incident management").count() == 0
    assert await page.get_by_role("heading", level=1).count() == 1

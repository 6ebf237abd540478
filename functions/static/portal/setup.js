// ServiceNow configuration: connect (save, then authorize in ServiceNow), status, test, state
// names, the Secure Score switches (write-back, work notes), push from ServiceNow, remove.

import { api } from "./api.js";
import { attention } from "./home.js";
import { clearErrors, errorBox, field, formatDate, h, showError } from "./ui.js";

// README, "Troubleshooting a ServiceNow connection": what happened, what to do.
const REASONS = {
  denied: ["Deny was clicked in ServiceNow, or ServiceNow sent no authorization.", "Select Re-authorize and click Allow in ServiceNow."],
  authorization_failed: ["ServiceNow refused the authorization request.", "Check the client id and the redirect URL of the Application Registry entry in ServiceNow, then authorize again."],
  unknown_state: ["The link ServiceNow came back with was not one this portal issued (edited, truncated, or from another deployment).", "Start again from this page; do not reuse old links."],
  expired_state: ["More than 10 minutes passed between starting and clicking Allow.", "Start again and finish within 10 minutes."],
  replay: ["That authorization was already used (a refresh, the back button, or a double click).", "Check the status below: the connection is often already connected."],
  superseded: ["A newer authorization link was requested after this one; only the latest works.", "Use the latest link, or start again."],
  configuration_changed: ["The instance or client id was changed, or the connection removed, after the link was issued.", "Start again from this page."],
  exchange_failed: ["ServiceNow refused to trade the authorization for tokens: usually a wrong client secret, a client id that does not match the Application Registry entry, or a different redirect URL.", "Check the client id and secret against the Application Registry entry, save them again, then authorize."],
  temporarily_unavailable: ["The portal's storage or key vault did not answer.", "Try again in a few minutes."],
};
const STATUS_NAMES = {
  not_configured: "Not connected",
  pending_authorization: "Waiting for authorization in ServiceNow",
  connected: "Connected",
  reauthorization_required: "Re-authorization required",
};
const TABLES = [
  ["incident", "Incident state names", { 1: "New", 2: "In Progress", 3: "On Hold", 6: "Resolved", 7: "Closed", 8: "Canceled" }],
  ["change_request", "Change request state names", { "-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled", "-1": "Implement", 0: "Review", 3: "Closed", 4: "Canceled" }],
];

export async function renderSetup(main, context) {
  main.append(h("h1", { text: "ServiceNow configuration" }));
  if (context.outcome) {
    main.append(outcomeMessage(context.outcome));
    context.outcome = null;
  }
  const status = await api("GET", "provisioning");
  const banner = attention(status);
  if (banner) main.append(banner);
  main.append(statusSection(status), connectionForm(status));
  if (status.status === "not_configured") return;
  main.append(testSection(), stateNamesSection(status, context), secureScoreSection(status), pushSection(status), removeSection());
}

function outcomeMessage({ result, reason }) {
  if (result === "connected") {
    return h("div", { class: "message success", role: "status" }, "ServiceNow is connected. You can now send improvement actions to ServiceNow and track the tickets on the home page.");
  }
  const [what, todo] = REASONS[reason] || ["The connection to ServiceNow was not completed.", "Start again from this page."];
  return h(
    "div",
    { class: "message error", role: "alert" },
    h("p", {}, h("strong", { text: "ServiceNow was not connected. " }), what),
    h("p", { text: `What to do: ${todo}` }),
    reason ? h("p", { class: "hint", text: `Reason code: ${reason}` }) : null,
  );
}

function statusSection(status) {
  const rows = [
    ["Status", STATUS_NAMES[status.status] || status.status],
    ["Instance", status.instanceUrl],
    ["Connected by", status.connectedBy],
    ["Connected at", status.connectedAt && formatDate(status.connectedAt)],
    ["Last sync", status.lastSyncAt ? formatDate(status.lastSyncAt) : status.status === "connected" ? "Not yet" : null],
    ["Authorization ends", status.refreshTokenExpiresAt && formatDate(status.refreshTokenExpiresAt)],
  ].filter(([, value]) => value);
  return h(
    "section",
    { class: "card", "aria-labelledby": "status-title" },
    h("h2", { id: "status-title", text: "Connection status" }),
    h("dl", { class: "facts" }, rows.map(([name, value]) => [h("dt", { text: name }), h("dd", { text: value })])),
  );
}

function connectionForm(status) {
  const configured = status.status !== "not_configured";
  const instance = h("input", { name: "instance", required: true, value: status.instance || "", autocomplete: "off" });
  const clientId = h("input", { name: "clientId", required: true, value: status.clientId || "", autocomplete: "off" });
  const secret = h("input", { name: "clientSecret", type: "password", required: !configured, autocomplete: "new-password" });
  const box = h("div");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "connection-title", novalidate: true },
    h("h2", { id: "connection-title", text: configured ? "Connection settings" : "Connect to ServiceNow" }),
    h("p", { class: "hint", text: "Create an OAuth API endpoint for external clients in ServiceNow (System OAuth > Application Registry) with this portal's callback as its redirect URL. When ServiceNow asks, sign in as the integration user, not with personal credentials, and click Allow." }),
    field("Instance", instance, "The instance name (contoso for contoso.service-now.com)."),
    field("Client ID", clientId),
    field("Client secret", secret, configured ? "Saved and never shown. Leave empty to keep it." : undefined),
    h("button", { type: "submit", class: "primary" }, "Authorize"),
    box,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, box);
    const body = { instance: instance.value.trim(), clientId: clientId.value.trim() };
    if (secret.value) body.clientSecret = secret.value;
    try {
      const answer = await api("PUT", "provisioning", { body });
      location.assign(answer.authorizeUrl);
    } catch (error) {
      showError(form, box, error);
    }
  });
  return form;
}

function testSection() {
  const results = h("div", { "aria-live": "polite" });
  const reauthorize = h("button", { type: "button" }, "Re-authorize");
  const test = h("button", { type: "button" }, "Test connection");
  reauthorize.addEventListener("click", async () => {
    try {
      location.assign((await api("POST", "provisioning/authorize")).authorizeUrl);
    } catch (error) {
      results.replaceChildren(errorBox(error));
    }
  });
  test.addEventListener("click", async () => {
    test.disabled = true;
    results.replaceChildren(h("p", { class: "hint", text: "Testing…" }));
    try {
      results.replaceChildren(checksList((await api("POST", "provisioning/diagnostics")).checks || []));
    } catch (error) {
      results.replaceChildren(errorBox(error));
    } finally {
      test.disabled = false;
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "test-title" },
    h("h2", { id: "test-title", text: "Check the connection" }),
    h("div", { class: "actions" }, test, reauthorize),
    results,
  );
}

function checksList(checks) {
  return h(
    "ul",
    { class: "checks", "aria-label": "Connection checks" },
    checks.map((check) =>
      h(
        "li",
        { class: `check ${check.status}` },
        h("strong", { text: `${check.title}: ${check.status}` }),
        check.detail ? h("p", { text: check.detail }) : null,
        check.fix ? h("p", { class: "hint", text: `What to do: ${check.fix}` }) : null,
      ),
    ),
  );
}

function stateNamesSection(status, context) {
  const box = h("div");
  const form = h("form", { class: "card", "aria-labelledby": "names-title", novalidate: true });
  form.append(h("h2", { id: "names-title", text: "Ticket state names" }), h("p", { class: "hint", text: "The names the portal shows for each ServiceNow state. Leave a name empty to use the default." }));
  for (const [table, legend, defaults] of TABLES) {
    const current = (status.stateNames && status.stateNames[table]) || {};
    const inputs = Object.entries(current).map(([code, name]) => {
      const input = h("input", { name: `${table}.${code}`, value: name, "data-default": defaults[code] || "", maxlength: 64 });
      const label = defaults[code] ? `${defaults[code]} (state ${code})` : `State ${code}`;
      return field(label, input, defaults[code] ? `Default: ${defaults[code]}` : undefined);
    });
    const reset = h("button", { type: "button" }, `Reset ${legend.toLowerCase()}`);
    reset.addEventListener("click", () => save(Object.fromEntries([[table, Object.fromEntries(Object.keys(current).map((code) => [code, null]))]])));
    form.append(h("fieldset", {}, h("legend", { text: legend }), inputs, reset));
  }
  const save = async (update) => {
    clearErrors(form, box);
    try {
      await api("PUT", "provisioning/state-names", { body: update });
      context.refresh();
    } catch (error) {
      showError(form, box, error);
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const update = {};
    for (const input of form.querySelectorAll("input")) {
      const [table, code] = input.name.split(".");
      const value = input.value.trim();
      update[table] = update[table] || {};
      update[table][code] = !value || value === input.dataset.default ? null : value;
    }
    save(update);
  });
  form.append(h("button", { type: "submit", class: "primary" }, "Save state names"), box);
  return form;
}

function secureScoreSection(status) {
  const secureScore = status.secureScore || {};
  const box = h("div", { "aria-live": "polite" });
  const facts = [
    ["Last check", secureScore.checkedAt ? formatDate(secureScore.checkedAt) : "Not yet"],
    ["Paused until", secureScore.pausedUntil && `${formatDate(secureScore.pausedUntil)} (Microsoft Graph asked us to wait; ServiceNow syncs go on)`],
  ].filter(([, value]) => value);
  const writeBack = secureScoreSwitch(secureScore, box, {
    key: "writeBack", id: "write-back", label: "Write ticket states back to Secure Score", name: "Write-back",
    hint: "Adds a comment with the ServiceNow number, link and state to the improvement action in Secure Score when a ticket is made and when its state changes; the action's own status is left as it is. Device actions cannot be written to. Needs the Microsoft Graph application permission SecurityEvents.ReadWrite.All on the connector's Graph app registration, granted with admin consent in your tenant; without it each ticket shows the write-back error.",
  });
  const workNotes = secureScoreSwitch(secureScore, box, {
    key: "workNotes", id: "work-notes", label: "Add a work note when an action is done while its ticket is open", name: "Work notes",
    hint: "Adds one work note to the ServiceNow ticket, once, when Secure Score shows its improvement action done while the ticket is still open. Before ever adding it again the connector looks for it in the ticket's journal, so the ServiceNow user needs read access to sys_journal_field.",
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "secure-score-title" },
    h("h2", { id: "secure-score-title", text: "Secure Score" }),
    h("p", { class: "hint", text: "Once a day the connector checks in Microsoft Secure Score whether each ticket's improvement action got done, and flags tickets closed without remediation, actions done while their ticket is open, and actions that regressed." }),
    h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", { text: name }), h("dd", { text: value })])),
    ...writeBack,
    ...workNotes,
    box,
  );
}

// One switch of the card: saved on change (only its own setting), the outcome said in `box`.
function secureScoreSwitch(secureScore, box, { key, id, label, name, hint }) {
  const toggle = h("input", { type: "checkbox", role: "switch", id, "aria-describedby": `${id}-hint`, checked: Boolean(secureScore[key]) });
  toggle.addEventListener("change", async () => {
    const wanted = toggle.checked;
    toggle.disabled = true;
    box.replaceChildren();
    try {
      const saved = await api("PUT", "provisioning/secure-score", { body: { [key]: wanted } });
      toggle.checked = Boolean(saved.secureScore && saved.secureScore[key]);
      box.replaceChildren(h("p", { class: "hint", role: "status", text: `${name} ${toggle.checked ? "is on." : "is off."}` }));
    } catch (error) {
      toggle.checked = !wanted;
      box.replaceChildren(errorBox(error));
    } finally {
      toggle.disabled = false;
    }
  });
  return [
    h("div", { class: "switch" }, toggle, h("label", { for: id, text: label })),
    h("p", { class: "hint", id: `${id}-hint`, text: hint }),
  ];
}

// Push from ServiceNow (docs/push.md): off until the first rotate; the key is shown once, here.
function pushSection(status) {
  const push = status.push || {};
  const box = h("div", { "aria-live": "polite" });
  let facts = pushFacts(push);
  const rotate = h("button", { type: "button", class: "primary" }, push.enabled ? "Rotate hook and key" : "Turn on push");
  const show = h("button", { type: "button", hidden: !push.enabled }, "Show the Business Rules");
  const run = async (button, method, path) => {
    button.disabled = true;
    try {
      const setup = await api(method, path);
      box.replaceChildren(...pushSetup(setup));
      const updated = pushFacts(setup.status || {});
      facts.replaceWith(updated);
      facts = updated;
      show.hidden = false;
      rotate.textContent = "Rotate hook and key";
    } catch (error) {
      box.replaceChildren(errorBox(error));
    } finally {
      button.disabled = false;
    }
  };
  rotate.addEventListener("click", () => run(rotate, "POST", "provisioning/push/rotate"));
  show.addEventListener("click", () => run(show, "GET", "provisioning/push"));
  return h(
    "section",
    { class: "card", "aria-labelledby": "push-title" },
    h("h2", { id: "push-title", text: "Push from ServiceNow" }),
    h("p", { class: "hint", text: "Ticket states reach the portal within seconds when ServiceNow calls the portal on each change (a Business Rule an admin installs). The regular sync still runs: a call ServiceNow loses is picked up by it. Rotating makes a new hook URL and key; the old ones stop working at once." }),
    facts,
    h("div", { class: "actions" }, rotate, show),
    box,
  );
}

function pushFacts(push) {
  const facts = [
    ["Push", push.enabled ? "On" : "Off"],
    ["Last push", push.lastPushAt ? formatDate(push.lastPushAt) : push.enabled ? "None yet" : null],
    ["Pushes in the last 24 hours", push.enabled ? String(push.pushesLast24h || 0) : null],
  ].filter(([, value]) => value);
  return h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", { text: name }), h("dd", { text: value })]));
}

function pushSetup(setup) {
  const shown = [h("p", { text: setup.instructions })];
  if (setup.key) {
    shown.push(h("div", { class: "message warning", role: "status" },
      h("p", {}, h("strong", { text: `Key for the system property ${setup.keyProperty} (shown only now): ` }), h("code", { class: "push-key", text: setup.key }))));
  }
  shown.push(h("p", {}, "Hook URL: ", h("code", { class: "push-url", text: setup.hookUrl || "" })));
  for (const rule of setup.businessRules || []) {
    shown.push(h("h3", { text: `${rule.name}: table ${rule.table}, when ${rule.when}, on insert and update` }),
      h("p", {}, "Condition: ", h("code", { text: rule.condition })),
      h("textarea", { readonly: true, rows: 12, cols: 80, "aria-label": `Script for ${rule.table}`, class: "push-script" }, rule.script));
  }
  return shown;
}

function removeSection() {
  const box = h("div");
  const confirm = h(
    "div",
    { class: "message warning", role: "alertdialog", "aria-labelledby": "remove-question", hidden: true },
    h("p", { id: "remove-question" }, h("strong", { text: "Remove the ServiceNow connection?" })),
    h("p", { text: "The portal revokes its tokens at ServiceNow and deletes the saved client secret. No tickets can be sent and ticket states stop updating until someone connects again. Tickets already created stay in ServiceNow and stay listed here." }),
  );
  const open = h("button", { type: "button", class: "danger" }, "Remove connection");
  const cancel = h("button", { type: "button" }, "Cancel");
  const remove = h("button", { type: "button", class: "danger" }, "Remove");
  open.addEventListener("click", () => {
    confirm.hidden = false;
    cancel.focus();
  });
  cancel.addEventListener("click", () => {
    confirm.hidden = true;
    open.focus();
  });
  remove.addEventListener("click", async () => {
    try {
      await api("DELETE", "provisioning");
      location.hash = "#/";
    } catch (error) {
      box.replaceChildren(errorBox(error));
    }
  });
  confirm.append(h("div", { class: "actions" }, remove, cancel));
  return h("section", { class: "card", "aria-labelledby": "remove-title" }, h("h2", { id: "remove-title", text: "Remove the connection" }), open, confirm, box);
}

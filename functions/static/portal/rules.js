// Rules: tickets created once a day for the improvement actions a rule matches; list, edit,
// preview (creates nothing), enable and disable, delete.

import { api } from "./api.js";
import { clearErrors, errorBox, field, formatDate, h, select, showError, TYPE_NAMES } from "./ui.js";

const CATEGORIES = ["Devices", "Data", "Apps", "Identity", "Infrastructure"];
const OUTCOMES = {
  completed: "Completed",
  capped: "Capped",
  paused: "Paused",
  not_connected: "ServiceNow not connected",
  failed: "Failed",
};
const NEW_RULE = {
  name: "",
  enabled: true,
  match: { categories: [], minPointsToGain: 0, includeActionIds: [], excludeActionIds: [], includeDeprecated: false, includeDeviceControls: false },
  ticket: { type: "incident", priority: 3, dueInDays: 30, recommendationSource: "microsoft" },
  maxPerRun: 25,
};

export async function renderRules(main, context) {
  main.append(
    h("h1", { text: "Rules" }),
    h("p", { class: "hint", text: "Once a day, right after Secure Score is read, each enabled rule creates a ServiceNow ticket for every improvement action it matches that has no open ticket yet, up to its cap." }),
  );
  const list = await api("GET", "rules");
  if (list.pausedUntil) {
    main.append(h("div", { class: "message error", role: "status" }, `ServiceNow asked us to wait: no rule creates tickets before ${formatDate(list.pausedUntil)}.`));
  }
  const panel = h("div", { class: "rule-panel" });
  const add = h("button", { type: "button", class: "primary" }, "New rule");
  add.addEventListener("click", () => openEditor(panel, null, context));
  main.append(list.items.length ? rulesTable(list.items, panel, context) : h("p", { text: "No rules yet." }), add, panel);
}

function summary(rule) {
  const m = rule.match;
  const parts = [m.categories.length ? m.categories.join(", ") : "All categories"];
  if (m.minPointsToGain) parts.push(`at least ${m.minPointsToGain} points to gain`);
  if (m.includeActionIds.length) parts.push(`only ${m.includeActionIds.join(", ")}`);
  if (m.excludeActionIds.length) parts.push(`not ${m.excludeActionIds.join(", ")}`);
  return parts.join("; ");
}

function lastRun(run) {
  if (!run) return "Not run yet";
  const made = run.created.length ? `${run.created.length} created (${run.created.map((c) => c.number || c.actionId).join(", ")})` : "none created";
  return `${formatDate(run.at)}: ${OUTCOMES[run.outcome] || run.outcome}, ${made}${run.message ? `. ${run.message}` : ""}`;
}

function rulesTable(rules, panel, context) {
  const rows = rules.map((rule) => {
    const enabled = h("input", { type: "checkbox", checked: rule.enabled, "aria-label": `Enabled: ${rule.name}` });
    enabled.addEventListener("change", async () => {
      try {
        await api("PUT", `rules/${encodeURIComponent(rule.id)}`, { body: { ...body(rule), enabled: enabled.checked } });
      } catch (error) {
        enabled.checked = !enabled.checked;
        panel.replaceChildren(errorBox(error));
      }
    });
    const edit = h("button", { type: "button", "aria-label": `Edit ${rule.name}` }, "Edit");
    edit.addEventListener("click", () => openEditor(panel, rule, context));
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${rule.name}` }, "Delete");
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete the rule ${rule.name}? The tickets it created stay.`)) return;
      try {
        await api("DELETE", `rules/${encodeURIComponent(rule.id)}`);
        context.refresh();
      } catch (error) {
        panel.replaceChildren(errorBox(error));
      }
    });
    const creates = `${TYPE_NAMES[rule.ticket.type]}, priority ${rule.ticket.priority}, due in ${rule.ticket.dueInDays} days; at most ${rule.maxPerRun} a day`;
    return h(
      "tr",
      {},
      h("th", { scope: "row", text: rule.name }),
      h("td", {}, enabled),
      h("td", { text: summary(rule) }),
      h("td", { text: creates }),
      h("td", { text: lastRun(rule.lastRun) }),
      h("td", {}, edit, " ", remove),
    );
  });
  return h(
    "table",
    { class: "grid", "aria-label": "Rules" },
    h("thead", {}, h("tr", {}, ["Rule", "Enabled", "Matches", "Creates", "Last run", ""].map((name) => h("th", { scope: "col", text: name })))),
    h("tbody", {}, rows),
  );
}

function body(rule) {
  const { name, enabled, match, ticket, maxPerRun } = rule;
  return { name, enabled, match, ticket, maxPerRun };
}

function ids(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

function openEditor(panel, rule, context) {
  const current = rule || NEW_RULE;
  const input = (name, value, attributes = {}) => h("input", { name, value: value ?? "", autocomplete: "off", ...attributes });
  const check = (name, checked) => h("input", { type: "checkbox", name, checked });
  const controls = {
    id: input("ruleId", rule ? rule.id : "", { required: true, disabled: Boolean(rule) }),
    name: input("name", current.name, { required: true }),
    enabled: check("enabled", current.enabled),
    minPoints: input("match.minPointsToGain", current.match.minPointsToGain, { type: "number", min: 0, step: "any" }),
    include: input("match.includeActionIds", current.match.includeActionIds.join(", ")),
    exclude: input("match.excludeActionIds", current.match.excludeActionIds.join(", ")),
    deprecated: check("match.includeDeprecated", current.match.includeDeprecated),
    devices: check("match.includeDeviceControls", current.match.includeDeviceControls),
    type: select("ticket.type", Object.entries(TYPE_NAMES), current.ticket.type),
    priority: select("ticket.priority", [1, 2, 3, 4, 5].map((p) => [String(p), String(p)]), String(current.ticket.priority)),
    due: input("ticket.dueInDays", current.ticket.dueInDays, { type: "number", min: 1, max: 365 }),
    cap: input("maxPerRun", current.maxPerRun, { type: "number", min: 1, max: 100 }),
  };
  const categories = CATEGORIES.map((c) => h("label", { class: "switch" }, check("match.categories", current.match.categories.includes(c)), ` ${c}`));
  categories.forEach((label, i) => label.firstChild.setAttribute("value", CATEGORIES[i]));
  const read = () => ({
    name: controls.name.value.trim(),
    enabled: controls.enabled.checked,
    match: {
      categories: CATEGORIES.filter((_, i) => categories[i].firstChild.checked),
      minPointsToGain: Number(controls.minPoints.value || 0),
      includeActionIds: ids(controls.include.value),
      excludeActionIds: ids(controls.exclude.value),
      includeDeprecated: controls.deprecated.checked,
      includeDeviceControls: controls.devices.checked,
    },
    ticket: { type: controls.type.value, priority: Number(controls.priority.value), dueInDays: Number(controls.due.value), recommendationSource: "microsoft" },
    maxPerRun: Number(controls.cap.value),
  });
  const box = h("div", { "aria-live": "polite" });
  const preview = h("button", { type: "button" }, "Preview");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "rule-title", novalidate: true },
    h("h2", { id: "rule-title", text: rule ? `Edit rule: ${rule.name}` : "New rule" }),
    field("Rule id", controls.id, "Lower-case letters, digits and dashes (for example identity-mfa)."),
    field("Name", controls.name),
    h("label", { class: "switch" }, controls.enabled, " Enabled"),
    h("fieldset", {}, h("legend", { text: "Categories (none: all)" }), categories),
    field("Minimum points to gain", controls.minPoints),
    field("Only these action ids", controls.include, "Comma-separated; empty: every action."),
    field("Never these action ids", controls.exclude, "Comma-separated."),
    h("label", { class: "switch" }, controls.deprecated, " Include deprecated actions"),
    h("label", { class: "switch" }, controls.devices, " Include device controls"),
    field("Ticket type", controls.type),
    field("Priority", controls.priority),
    field("Due in days", controls.due),
    field("At most this many tickets a day", controls.cap),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save"), " ", preview),
    box,
  );
  preview.addEventListener("click", async () => {
    clearErrors(form, box);
    try {
      const answer = await api("POST", "rules/preview", { body: { rule: read() } });
      box.replaceChildren(previewResult(answer));
    } catch (error) {
      showError(form, box, fieldsUnder(error, "rule."));
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, box);
    const id = rule ? rule.id : controls.id.value.trim();
    try {
      await api("PUT", `rules/${encodeURIComponent(id)}`, { body: read() });
      context.refresh();
    } catch (error) {
      showError(form, box, error);
    }
  });
  panel.replaceChildren(form);
  (rule ? controls.name : controls.id).focus();
}

// The preview's errors name fields under `rule.`: the form's fields are the rule's own.
function fieldsUnder(error, prefix) {
  error.fields = error.fields.map((f) => ({ ...f, field: f.field.startsWith(prefix) ? f.field.slice(prefix.length) : f.field }));
  return error;
}

function previewResult(answer) {
  const items = answer.wouldCreate.map((a) => h("li", {}, `${a.title} (${a.actionId}, ${a.category || "no category"}): ${a.pointsToGain} points to gain`));
  return h(
    "section",
    { class: "card", "aria-labelledby": "preview-title" },
    h("h3", { id: "preview-title", text: `Would create ${answer.wouldCreate.length} ticket(s) now` }),
    answer.message ? h("p", { class: "message error", text: answer.message }) : null,
    items.length ? h("ul", { class: "preview" }, items) : h("p", { text: "Nothing to create now." }),
    answer.overCap ? h("p", { text: `${answer.overCap} more matching action(s) wait for a later run (the cap).` }) : null,
    answer.skipped.length ? h("p", { class: "hint", text: `Skipped: ${answer.skipped.map((s) => `${s.actionId} (${s.reason})`).join("; ")}` }) : null,
  );
}

// The task form ServiceNow tickets are made from: prefilled from an improvement action, or empty.

import { api } from "./api.js";
import { clearErrors, field, h, select, showError, ticketLink } from "./ui.js";

const PRIORITIES = [["1", "1 - Critical"], ["2", "2 - High"], ["3", "3 - Moderate"], ["4", "4 - Low"], ["5", "5 - Planning"]];
const CATEGORIES = ["Devices", "Data", "Apps", "Identity", "Infrastructure"];
const POLL_MS = 1000;
const POLL_LIMIT = 120;

function inDays(days) {
  const date = new Date(Date.now() + days * 86400000);
  return date.toISOString().slice(0, 10);
}

export function ticketForm({ action = null, type = "incident", onSent = () => {} } = {}) {
  const controls = {
    type: select("type", [["incident", "Incident"], ["change_request", "Change request"]], type),
    name: h("input", { name: "name", value: action ? action.title : "", maxlength: 160, required: true }),
    description: h("textarea", { name: "description", rows: 4, maxlength: 4000 }),
    priority: select("priority", PRIORITIES, "3"),
    dueDate: h("input", { name: "dueDate", type: "date", value: inDays(30), required: true }),
    recommendationSource: select("recommendationSource", [["microsoft", "Microsoft recommendation"], ["user", "User recommendation"]], action ? "microsoft" : "user"),
    recommendationCategory: select("recommendationCategory", [["", "Choose…"], ...CATEGORIES.map((c) => [c, c])], (action && action.category) || ""),
  };
  if (action) controls.description.value = `Improvement action: ${action.title}`;
  const box = h("div");
  const result = h("div", { role: "status", "aria-live": "polite" });
  const send = h("button", { type: "submit", class: "primary" }, "Send to ServiceNow");
  const form = h(
    "form",
    { class: "card ticket-form", "aria-label": action ? `Share ${action.title} to ServiceNow` : "New ServiceNow ticket", novalidate: true },
    action ? h("p", { class: "hint", text: `From improvement action ${action.id}` }) : null,
    field("Type", controls.type),
    field("Name", controls.name),
    field("Description", controls.description),
    field("Priority", controls.priority),
    field("Due date", controls.dueDate),
    field("Recommendation source", controls.recommendationSource),
    field("Recommendation category", controls.recommendationCategory),
    h("div", { class: "actions" }, send),
    box,
    result,
  );
  // One key per content: a retry of the same form is recognised by the API, never made twice.
  let sent = { body: "", key: "" };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, box);
    const body = bodyOf(controls, action);
    const text = JSON.stringify(body);
    if (text !== sent.body) sent = { body: text, key: crypto.randomUUID() };
    send.disabled = true;
    result.textContent = "Sending…";
    try {
      const ticket = await api("POST", "tickets", { body, headers: { "Idempotency-Key": sent.key } });
      showTicket(result, ticket);
      onSent(ticket);
      if (ticket.status === "creating") await follow(result, ticket);
    } catch (error) {
      result.textContent = "";
      showError(form, box, error);
      send.disabled = false;
    }
  });
  return form;
}

function bodyOf(controls, action) {
  const body = {
    type: controls.type.value,
    priority: Number(controls.priority.value),
    dueDate: controls.dueDate.value,
    recommendationSource: controls.recommendationSource.value,
  };
  if (controls.name.value.trim()) body.name = controls.name.value.trim();
  if (controls.description.value.trim()) body.description = controls.description.value.trim();
  if (controls.recommendationCategory.value) body.recommendationCategory = controls.recommendationCategory.value;
  if (action) body.improvementActionId = action.id;
  return body;
}

function showTicket(result, ticket) {
  if (ticket.status === "created") result.replaceChildren("Sent to ServiceNow as ", ticketLink(ticket), ".");
  else result.replaceChildren(ticketLink(ticket));
}

async function follow(result, ticket) {
  for (let round = 0; round < POLL_LIMIT; round += 1) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const current = await api("GET", `tickets/${encodeURIComponent(ticket.id)}`);
    if (current.status !== "creating") {
      showTicket(result, current);
      return;
    }
  }
}

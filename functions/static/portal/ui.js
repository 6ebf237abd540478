// Small DOM helpers: elements are built from text, never from HTML strings.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

let uniqueId = 0;
export function nextId(prefix) {
  uniqueId += 1;
  return `${prefix}-${uniqueId}`;
}

// A labelled control with a place for the API's message about it (`name` is the API's field).
export function field(label, control, hint) {
  const id = control.id || nextId("field");
  control.id = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const hintElement = hint ? h("p", { class: "hint", id: `${id}-hint`, text: hint }) : null;
  control.setAttribute("aria-describedby", [hintElement && hintElement.id, error.id].filter(Boolean).join(" "));
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control, hintElement, error);
}

export function errorText(error) {
  const id = error && error.requestId ? ` (request id ${error.requestId})` : "";
  return `${(error && error.message) || "Something went wrong."}${id}`;
}

export function errorBox(error) {
  return h("div", { class: "message error", role: "alert" }, errorText(error));
}

// Show the error next to the fields it names, else in `box`; returns whether a field took it.
export function showError(form, box, error) {
  clearErrors(form, box);
  let placed = false;
  for (const problem of (error && error.fields) || []) {
    const control = form.querySelector(`[name="${CSS.escape(problem.field)}"]`);
    const slot = control && document.getElementById(`${control.id}-error`);
    if (!slot) continue;
    slot.textContent = problem.message;
    slot.hidden = false;
    control.setAttribute("aria-invalid", "true");
    if (!placed) control.focus();
    placed = true;
  }
  box.replaceChildren(errorBox(error));
  return placed;
}

export function clearErrors(form, box) {
  for (const slot of form.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  box.replaceChildren();
}

export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map(([optionValue, text]) => h("option", { value: optionValue, selected: optionValue === value }, text)),
  );
}

export function formatDate(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return /^\d{4}-\d{2}-\d{2}$/.test(value) ? value : date.toLocaleString();
}

export function ticketLink(ticket) {
  if (ticket.status === "creating") return h("span", { class: "muted" }, "Sending…");
  if (ticket.status === "failed") return h("span", { class: "bad" }, `Failed: ${ticket.failureReason || "not created"}`);
  return h("a", { href: ticket.url, target: "_blank", rel: "noopener noreferrer" }, ticket.number);
}

export const TYPE_NAMES = { incident: "Incident", change_request: "Change request" };

export function hashQuery() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

// Secure Score's verdict on a ticket's improvement action (GET /api/tickets: `remediation`).
export const FLAG_NAMES = {
  closedWithoutRemediation: "Closed without remediation",
  remediatedWhileOpen: "Remediated while open",
  regressed: "Regressed",
};
export const FLAG_HELP = {
  closedWithoutRemediation: "ServiceNow closed the ticket, but Secure Score still does not award the action's points after the grace period.",
  remediatedWhileOpen: "Secure Score shows the action done while the ticket is still open in ServiceNow.",
  regressed: "The action was done before and has since lost points: open a new ticket for it.",
};
const REMEDIATION_NAMES = {
  completed: "Completed",
  resolved_by_exception: "Resolved by exception",
  in_progress: "In progress",
  unknown: "Unknown",
  not_applicable: "Not applicable",
};

export function remediationName(remediation) {
  if (!remediation || !remediation.status) return "Not checked yet";
  return REMEDIATION_NAMES[remediation.status] || remediation.status;
}

export function flagBadges(ticket) {
  const flags = (ticket.remediation && ticket.remediation.flags) || {};
  return Object.keys(FLAG_NAMES)
    .filter((flag) => flags[flag])
    .map((flag) => h("span", { class: `badge ${flag}`, title: FLAG_HELP[flag] }, FLAG_NAMES[flag]));
}

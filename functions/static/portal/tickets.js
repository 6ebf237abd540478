// All tickets (filters and paging), one ticket with what Secure Score says of its action, its
// ServiceNow notes and its timeline, and the empty ticket form.

import { api } from "./api.js";
import { ticketForm } from "./ticket-form.js";
import { FLAG_HELP, FLAG_NAMES, TYPE_NAMES, clearErrors, errorBox, field, flagBadges, formatDate, h, hashQuery, remediationName, select, showError, ticketLink } from "./ui.js";

const PAGE_SIZE = 20;
// Written on the ticket instead of an error when its action is a device control (`scid_...`).
const DEVICE_CONTROL = /^scid_/;

export async function renderTickets(main) {
  const query = hashQuery();
  const type = query.get("type") || "";
  const state = query.get("state") || "";
  const flag = FLAG_NAMES[query.get("flag")] ? query.get("flag") : "";
  main.append(h("h1", { text: "All tickets" }));
  const status = await api("GET", "provisioning");
  const typeFilter = select("type", [["", "All types"], ...Object.entries(TYPE_NAMES)], type);
  const names = type ? Object.entries((status.stateNames || {})[type] || {}) : [];
  const stateFilter = select("state", [["", "All states"], ...names], state);
  const flagFilter = select("flag", [["", "Any"], ...Object.entries(FLAG_NAMES)], flag);
  stateFilter.disabled = !type;
  typeFilter.id = "type-filter";
  stateFilter.id = "state-filter";
  flagFilter.id = "flag-filter";
  const go = (next) => {
    const params = new URLSearchParams(Object.entries(next).filter(([, value]) => value));
    location.hash = `#/tickets${params.size ? `?${params}` : ""}`;
  };
  typeFilter.addEventListener("change", () => go({ type: typeFilter.value, flag }));
  stateFilter.addEventListener("change", () => go({ type, state: stateFilter.value, flag }));
  flagFilter.addEventListener("change", () => go({ type, state, flag: flagFilter.value }));
  main.append(
    h("div", { class: "filters" },
      h("label", { for: typeFilter.id, text: "Type" }), typeFilter,
      h("label", { for: stateFilter.id, text: "State" }), stateFilter,
      h("label", { for: flagFilter.id, text: "Remediation flag" }), flagFilter,
      h("a", { class: "button", href: `#/create${type ? `?type=${type}` : ""}` }, "Create a ticket")),
  );
  if (flag) main.append(h("p", { class: "hint", text: FLAG_HELP[flag] }));
  const body = h("tbody");
  const pager = h("div", { class: "actions" });
  const columns = ["Number", "Type", "Name", "Created by", "Due date", "State", "Remediation", "Last update"];
  main.append(
    h("table", { class: "grid", "aria-label": "Tickets" },
      h("thead", {}, h("tr", {}, columns.map((name) => h("th", { scope: "col", text: name })))),
      body),
    pager,
  );
  await showPage(body, pager, { type, state, flag }, [""]);
}

async function showPage(body, pager, filters, tokens) {
  const params = new URLSearchParams({ top: String(PAGE_SIZE) });
  for (const name of ["type", "state", "flag"]) if (filters[name]) params.set(name, filters[name]);
  const token = tokens[tokens.length - 1];
  if (token) params.set("continuationToken", token);
  const page = await api("GET", `tickets?${params}`);
  body.replaceChildren(
    ...page.items.map((ticket) => h("tr", {},
      h("td", {}, ticketLink(ticket)),
      h("td", { text: TYPE_NAMES[ticket.type] || ticket.type }),
      h("td", {}, h("a", { href: `#/ticket?id=${encodeURIComponent(ticket.id)}` }, ticket.name)),
      h("td", { text: ticket.createdBy }),
      h("td", { text: ticket.dueDate }),
      h("td", { text: ticket.stateName || "—" }),
      h("td", { class: "remediation" }, ticket.remediation ? remediationName(ticket.remediation) : "—", flagBadges(ticket)),
      h("td", { text: formatDate(ticket.stateUpdatedAt || ticket.createdAt) }))),
  );
  if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 8, text: "No tickets." })));
  const previous = h("button", { type: "button", disabled: tokens.length < 2 }, "Previous page");
  const next = h("button", { type: "button", disabled: !page.continuationToken }, "Next page");
  previous.addEventListener("click", () => showPage(body, pager, filters, tokens.slice(0, -1)));
  next.addEventListener("click", () => showPage(body, pager, filters, [...tokens, page.continuationToken]));
  pager.replaceChildren(previous, next);
}

export async function renderTicket(main) {
  const id = hashQuery().get("id") || "";
  const ticket = await api("GET", `tickets/${encodeURIComponent(id)}`);
  main.append(h("h1", { text: ticket.name }));
  const facts = [
    ["Number", ticketLink(ticket)],
    ["Type", TYPE_NAMES[ticket.type] || ticket.type],
    ["State", ticket.deletedInServiceNowAt ? `Deleted in ServiceNow (last state: ${ticket.stateName || "—"})` : ticket.stateName || "—"],
    ["Priority", String(ticket.priority)],
    ["Due date", ticket.dueDate],
    ["Created by", `${ticket.createdBy}, ${formatDate(ticket.createdAt)}`],
    ["Last update", formatDate(ticket.stateUpdatedAt)],
    ["Improvement action", ticket.improvementActionId || "None"],
  ];
  main.append(
    h("section", { class: "card", "aria-labelledby": "ticket-title" },
      h("h2", { id: "ticket-title", text: "Ticket" }),
      h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", { text: name }), h("dd", {}, value)]))),
    remediationSection(ticket),
    notesSection(ticket),
    timelineSection(ticket),
  );
}

const CHANGES = {
  status_changed: "Secure Score status", flag_raised: "Flag raised", flag_cleared: "Flag cleared",
  write_back_sent: "Written back to Secure Score", write_back_failed: "Write-back to Secure Score failed",
  work_note_added: "Work note: action looks done",
};

// What one timeline event says, in words (state codes as ServiceNow stores them).
function eventText(event) {
  switch (event.type) {
    case "created": return `Created by ${event.createdByName || event.createdBy}`;
    case "state_changed": return `State ${event.from ?? "?"} → ${event.to} (seen by ${event.via} ${formatDate(event.seenAt)})`;
    case "note_added": return `${NOTE_KINDS[event.kind] || event.kind} added by ${event.author}`;
    case "deleted_in_servicenow": return "Deleted in ServiceNow";
    case "remediation": return [CHANGES[event.change] || event.change, event.name].filter(Boolean).join(": ");
    default: return event.type;
  }
}

// What happened to the ticket, oldest first (the newest 500 events are kept).
function timelineSection(ticket) {
  const list = h("div", { class: "timeline" }, h("p", { class: "hint", text: "Loading…" }));
  (async () => {
    try {
      const answer = await api("GET", `tickets/${encodeURIComponent(ticket.id)}/events`);
      const items = answer.events.map((event) =>
        h("li", { "data-event": event.type }, h("span", { class: "hint", text: `${formatDate(event.at)} · ` }), eventText(event)));
      const more = answer.truncated ? h("p", { class: "hint", text: `Only the newest ${answer.limit} events are kept.` }) : null;
      const shown = items.length ? h("ol", { class: "event-list" }, items) : h("p", { text: "Nothing recorded yet." });
      list.replaceChildren(...[shown, more].filter(Boolean));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  })();
  return h("section", { class: "card", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title", text: "Timeline" }), list);
}

const NOTE_KINDS = { work_note: "Work note", comment: "Additional comment" };

// The record's work notes and comments, newest first, and a form that adds one (one key per text).
function notesSection(ticket) {
  const list = h("div", { class: "notes" });
  const section = h("section", { class: "card", "aria-labelledby": "notes-title" }, h("h2", { id: "notes-title", text: "Notes" }), list);
  const load = async () => {
    try {
      const answer = await api("GET", `tickets/${encodeURIComponent(ticket.id)}/notes`);
      const items = answer.notes.map((note) =>
        h("li", {}, h("p", { class: "hint", text: `${NOTE_KINDS[note.kind] || note.kind} · ${note.author} · ${formatDate(note.createdAt)}` }), h("p", { class: "note-text" }, note.text.split("\n").flatMap((line, index) => (index ? [h("br"), line] : [line])))));
      const source = answer.source === "display_values" ? h("p", { class: "hint", text: "Read from the record's display values: the integration user may not read sys_journal_field." }) : null;
      const more = answer.truncated ? h("p", { class: "hint", text: "Only the newest 100 notes are shown." }) : null;
      list.replaceChildren(items.length ? h("ul", { class: "note-list" }, items) : h("p", { text: "No notes yet." }), source, more);
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  if (ticket.status === "created" && !ticket.deletedInServiceNowAt) section.append(noteForm(ticket, load));
  load();
  return section;
}

function noteForm(ticket, onAdded) {
  const kind = select("kind", Object.entries(NOTE_KINDS), "work_note");
  const text = h("textarea", { name: "text", rows: 3, maxlength: 4000, required: true });
  const send = h("button", { type: "submit", text: "Add note" });
  const box = h("div");
  const form = h("form", { class: "note-form", "aria-label": "Add a note", novalidate: true }, field("Kind", kind), field("Text", text), h("div", { class: "actions" }, send), box);
  let sent = { body: "", key: "" };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, box);
    const body = { kind: kind.value, text: text.value };
    if (JSON.stringify(body) !== sent.body) sent = { body: JSON.stringify(body), key: crypto.randomUUID() };
    send.disabled = true;
    try {
      await api("POST", `tickets/${encodeURIComponent(ticket.id)}/notes`, { body, headers: { "Idempotency-Key": sent.key } });
      text.value = "";
      await onAdded();
    } catch (error) {
      showError(form, box, error);
    } finally {
      send.disabled = false;
    }
  });
  return form;
}

function remediationSection(ticket) {
  const section = h("section", { class: "card", "aria-labelledby": "remediation-title" }, h("h2", { id: "remediation-title", text: "Secure Score remediation" }));
  const remediation = ticket.remediation;
  if (!remediation) {
    const why = ticket.improvementActionId
      ? "Not checked yet: Secure Score is checked once a day."
      : "This ticket was not made from an improvement action, so Secure Score says nothing about it.";
    section.append(h("p", { class: "hint", text: why }));
    return section;
  }
  const points = remediation.maxScore === null || remediation.maxScore === undefined ? "—" : `${remediation.score ?? "—"} of ${remediation.maxScore}`;
  const facts = [
    ["Status", remediationName(remediation)],
    ["Points", points],
    ["Checked", formatDate(remediation.checkedAt)],
    ["First seen completed", formatDate(remediation.completedAt)],
    ["Ticket closed", formatDate(remediation.closedAt)],
  ];
  section.append(h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", { text: name }), h("dd", { text: value })])));
  const flags = Object.keys(FLAG_NAMES).filter((flag) => remediation.flags[flag]);
  if (flags.length) {
    section.append(h("ul", { class: "flag-list", "aria-label": "Remediation flags" },
      flags.map((flag) => h("li", {}, h("span", { class: `badge ${flag}` }, FLAG_NAMES[flag]), ` ${FLAG_HELP[flag]}`))));
  }
  section.append(writeBackPart(ticket, remediation.writeBack));
  return section;
}

function writeBackPart(ticket, writeBack) {
  const part = h("div", { class: "write-back" }, h("h3", { text: "Written back to Secure Score" }));
  if (!writeBack) {
    part.append(h("p", { class: "hint", text: "Nothing written yet (the write-back is switched on in ServiceNow configuration)." }));
    return part;
  }
  if (writeBack.comment) {
    part.append(h("p", {}, "Comment on the control: ", h("q", { text: writeBack.comment }), writeBack.writtenAt ? ` (${formatDate(writeBack.writtenAt)})` : ""));
  }
  if (writeBack.error && DEVICE_CONTROL.test(ticket.improvementActionId || "")) {
    part.append(h("p", { class: "hint", text: writeBack.error }));
  } else if (writeBack.error) {
    part.append(h("div", { class: "message error" }, h("p", { text: `The last write-back failed: ${writeBack.error}` }), h("p", { text: "It is tried again with the next check." })));
  }
  return part;
}

export async function renderCreate(main) {
  const type = hashQuery().get("type") === "change_request" ? "change_request" : "incident";
  main.append(h("h1", { text: "Create a ticket" }), ticketForm({ type }));
}

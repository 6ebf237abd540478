// All tickets (filters and paging) and the empty ticket form.

import { api } from "./api.js";
import { ticketForm } from "./ticket-form.js";
import { TYPE_NAMES, formatDate, h, hashQuery, select, ticketLink } from "./ui.js";

const PAGE_SIZE = 20;

export async function renderTickets(main) {
  const query = hashQuery();
  const type = query.get("type") || "";
  const state = query.get("state") || "";
  main.append(h("h1", { text: "All tickets" }));
  const status = await api("GET", "provisioning");
  const typeFilter = select("type", [["", "All types"], ...Object.entries(TYPE_NAMES)], type);
  const names = type ? Object.entries((status.stateNames || {})[type] || {}) : [];
  const stateFilter = select("state", [["", "All states"], ...names], state);
  stateFilter.disabled = !type;
  typeFilter.id = "type-filter";
  stateFilter.id = "state-filter";
  const go = (next) => {
    const params = new URLSearchParams(Object.entries(next).filter(([, value]) => value));
    location.hash = `#/tickets${params.size ? `?${params}` : ""}`;
  };
  typeFilter.addEventListener("change", () => go({ type: typeFilter.value }));
  stateFilter.addEventListener("change", () => go({ type, state: stateFilter.value }));
  main.append(
    h("div", { class: "filters" },
      h("label", { for: typeFilter.id, text: "Type" }), typeFilter,
      h("label", { for: stateFilter.id, text: "State" }), stateFilter,
      h("a", { class: "button", href: `#/create${type ? `?type=${type}` : ""}` }, "Create a ticket")),
  );
  const body = h("tbody");
  const pager = h("div", { class: "actions" });
  main.append(
    h("table", { class: "grid", "aria-label": "Tickets" },
      h("thead", {}, h("tr", {}, ["Number", "Type", "Name", "Created by", "Due date", "State", "Last update"].map((name) => h("th", { scope: "col", text: name })))),
      body),
    pager,
  );
  await showPage(body, pager, { type, state }, [""]);
}

async function showPage(body, pager, filters, tokens) {
  const params = new URLSearchParams({ top: String(PAGE_SIZE) });
  if (filters.type) params.set("type", filters.type);
  if (filters.state) params.set("state", filters.state);
  const token = tokens[tokens.length - 1];
  if (token) params.set("continuationToken", token);
  const page = await api("GET", `tickets?${params}`);
  body.replaceChildren(
    ...page.items.map((ticket) => h("tr", {},
      h("td", {}, ticketLink(ticket)),
      h("td", { text: TYPE_NAMES[ticket.type] || ticket.type }),
      h("td", { text: ticket.name }),
      h("td", { text: ticket.createdBy }),
      h("td", { text: ticket.dueDate }),
      h("td", { text: ticket.stateName || "—" }),
      h("td", { text: formatDate(ticket.stateUpdatedAt || ticket.createdAt) }))),
  );
  if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 7, text: "No tickets." })));
  const previous = h("button", { type: "button", disabled: tokens.length < 2 }, "Previous page");
  const next = h("button", { type: "button", disabled: !page.continuationToken }, "Next page");
  previous.addEventListener("click", () => showPage(body, pager, filters, tokens.slice(0, -1)));
  next.addEventListener("click", () => showPage(body, pager, filters, [...tokens, page.continuationToken]));
  pager.replaceChildren(previous, next);
}

export async function renderCreate(main) {
  const type = hashQuery().get("type") === "change_request" ? "change_request" : "incident";
  main.append(h("h1", { text: "Create a ticket" }), ticketForm({ type }));
}

// Improvement actions: Secure Score's list with scores and tickets, and Share > ServiceNow.

import { api } from "./api.js";
import { ticketForm } from "./ticket-form.js";
import { h, hashQuery, select, ticketLink } from "./ui.js";

const CATEGORIES = ["Devices", "Data", "Apps", "Identity", "Infrastructure"];

export async function renderActions(main) {
  const category = hashQuery().get("category") || "";
  main.append(h("h1", { text: "Improvement actions" }));
  const filter = select("category", [["", "All categories"], ...CATEGORIES.map((c) => [c, c])], category);
  filter.id = "category-filter";
  filter.addEventListener("change", () => {
    location.hash = filter.value ? `#/actions?category=${encodeURIComponent(filter.value)}` : "#/actions";
  });
  main.append(h("div", { class: "filters" }, h("label", { for: filter.id, text: "Category" }), filter));
  const query = category ? `?category=${encodeURIComponent(category)}` : "";
  const page = await api("GET", `improvement-actions${query}`);
  const panel = h("div", { class: "share-panel" });
  const rows = page.items.map((action) => actionRow(action, panel));
  main.append(
    h(
      "table",
      { class: "grid", "aria-label": "Improvement actions" },
      h("thead", {}, h("tr", {}, ["Action", "Category", "Score", "Tickets", ""].map((name) => h("th", { scope: "col", text: name })))),
      h("tbody", {}, rows),
    ),
    panel,
  );
}

function score(action) {
  if (action.maxScore === null) return "—";
  return `${action.currentScore ?? 0} of ${action.maxScore}`;
}

function actionRow(action, panel) {
  const tickets = h("td", {}, action.tickets.map((ticket) => h("div", {}, ticketLink(ticket), ` ${ticket.stateName || ""}`)));
  return h(
    "tr",
    {},
    h("th", { scope: "row", text: action.title }),
    h("td", { text: action.category || "—" }),
    h("td", { text: score(action) }),
    tickets,
    h("td", {}, shareMenu(action, panel, tickets)),
  );
}

function shareMenu(action, panel, tickets) {
  const id = `share-${action.id}`;
  const button = h("button", { type: "button", "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": id, "aria-label": `Share ${action.title}` }, "Share");
  const item = h("button", { type: "button", role: "menuitem" }, "ServiceNow");
  const menu = h("div", { id, role: "menu", class: "menu", hidden: true }, item);
  const close = () => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  button.addEventListener("click", () => {
    menu.hidden = !menu.hidden;
    button.setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) item.focus();
  });
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      close();
      button.focus();
    }
  });
  item.addEventListener("click", () => {
    close();
    const onSent = (ticket) => tickets.append(h("div", {}, ticketLink(ticket)));
    const form = ticketForm({ action, onSent });
    panel.replaceChildren(h("h2", { text: `Share to ServiceNow: ${action.title}` }), form);
    form.querySelector("select, input").focus();
  });
  return h("div", { class: "menu-wrap" }, button, menu);
}

// Home: the connection card, or one card per ticket type with counts by state, the remediation
// flags (each a link to the tickets carrying it) and recent tickets.

import { api } from "./api.js";
import { FLAG_HELP, FLAG_NAMES, errorBox, formatDate, h, ticketLink } from "./ui.js";

const CARDS = [
  ["incident", "ServiceNow Incident management"],
  ["change_request", "ServiceNow Change management"],
];
const RECENT = 3;
const SYNC_WAIT_MS = 60000;

export async function renderHome(main, context) {
  main.append(h("h1", { text: "Home" }));
  const status = await api("GET", "provisioning");
  if (status.status !== "connected" && status.status !== "reauthorization_required") {
    main.append(connectCard(status));
    return;
  }
  const banner = attention(status);
  if (banner) main.append(banner);
  const [summary, page] = await Promise.all([api("GET", "tickets/summary"), api("GET", "tickets?top=50")]);
  const cards = h("div", { class: "cards" });
  for (const [type, title] of CARDS) cards.append(ticketCard(type, title, summary[type], page.items));
  main.append(cards, syncBar(status, context));
}

function connectCard(status) {
  const pending = status.status === "pending_authorization";
  return h(
    "section",
    { class: "card", "aria-labelledby": "connect-title" },
    h("h2", { id: "connect-title", text: "Do you use ServiceNow?" }),
    h("p", { text: "Connect your ServiceNow instance to send improvement actions to it as tickets and track their states here." }),
    pending ? h("p", { class: "hint", text: "Setup was started but nobody has authorized the connection in ServiceNow yet." }) : null,
    h("button", { type: "button", class: "primary", onclick: () => (location.hash = "#/setup") }, "Connect to ServiceNow"),
  );
}

export function attention(status) {
  const lines = [];
  if (status.status === "reauthorization_required") {
    lines.push("ServiceNow no longer accepts this connection's authorization: tickets are not synced or created until an admin re-authorizes it.");
  } else if (status.refreshTokenExpiresSoon) {
    lines.push(`The ServiceNow authorization ends on ${formatDate(status.refreshTokenExpiresAt)}: re-authorize before then.`);
  }
  if (status.lastError) lines.push(`Last problem: ${status.lastError}`);
  if (!lines.length) return null;
  return h(
    "section",
    { class: "message warning", role: "region", "aria-label": "Connection needs attention" },
    lines.map((line) => h("p", { text: line })),
    h("a", { href: "#/setup" }, "Open ServiceNow configuration"),
  );
}

function ticketCard(type, title, summary, tickets) {
  const id = `card-${type}`;
  const recent = tickets.filter((ticket) => ticket.type === type).slice(0, RECENT);
  const counts = summary.states.map((state) =>
    h("li", {}, h("span", { class: "count" }, String(state.count)), " ", state.name),
  );
  return h(
    "section",
    { class: "card", "aria-labelledby": id },
    h("h2", { id, text: title }),
    h("p", { class: "total", text: `${summary.total} ticket${summary.total === 1 ? "" : "s"}` }),
    h("ul", { class: "counts", "aria-label": "Tickets by state" }, counts),
    flagCounts(type, summary.flags || {}),
    recent.length
      ? h(
          "table",
          { "aria-label": "Recent tickets" },
          h("thead", {}, h("tr", {}, ["Number", "Name", "State", "Due date"].map((name) => h("th", { scope: "col", text: name })))),
          h("tbody", {}, recent.map((ticket) => h("tr", {}, h("td", {}, ticketLink(ticket)), h("td", { text: ticket.name }), h("td", { text: ticket.stateName || "—" }), h("td", { text: ticket.dueDate })))),
        )
      : h("p", { class: "hint", text: "No tickets yet." }),
    h(
      "div",
      { class: "actions" },
      h("a", { class: "button", href: `#/create?type=${type}` }, "Create a ticket"),
      h("a", { href: `#/tickets?type=${type}` }, "View all tickets"),
      h("a", { href: "#/setup" }, "Manage ServiceNow configuration"),
    ),
  );
}

function flagCounts(type, flags) {
  const items = Object.entries(FLAG_NAMES).map(([flag, name]) => {
    const count = flags[flag] || 0;
    return h(
      "li",
      { class: count ? "flagged" : null },
      h("a", { href: `#/tickets?type=${type}&flag=${flag}`, title: FLAG_HELP[flag] }, h("span", { class: "count" }, String(count)), ` ${name}`),
    );
  });
  return h("ul", { class: "counts flags", "aria-label": "Remediation flags" }, items);
}

function syncBar(status, context) {
  const note = h("p", { class: "hint", role: "status", text: `Last sync: ${formatDate(status.lastSyncAt)}` });
  const button = h("button", { type: "button" }, "Sync now");
  const box = h("div");
  button.addEventListener("click", async () => {
    button.disabled = true;
    box.replaceChildren();
    note.textContent = "Syncing…";
    try {
      await api("POST", "sync");
      await waitForSync(status.lastSyncAt);
      context.refresh();
    } catch (error) {
      box.replaceChildren(errorBox(error));
      note.textContent = `Last sync: ${formatDate(status.lastSyncAt)}`;
      button.disabled = false;
    }
  });
  return h("div", { class: "sync" }, note, button, box);
}

async function waitForSync(before) {
  const deadline = Date.now() + SYNC_WAIT_MS;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const status = await api("GET", "provisioning");
    if (status.lastSyncAt && status.lastSyncAt !== before && !status.syncInProgress) return;
  }
  throw new Error("The sync has not finished yet; its results will show when it has.");
}

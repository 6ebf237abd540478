// The portal's entry: sign-in, the OAuth outcome in the address, and one screen per hash route.

import { api } from "./api.js";
import { renderActions } from "./actions.js";
import { renderHome } from "./home.js";
import { renderRules } from "./rules.js";
import { renderSetup } from "./setup.js";
import { renderAccount, signedIn } from "./signin.js";
import { renderCreate, renderTicket, renderTickets } from "./tickets.js";
import { errorBox, h } from "./ui.js";

const SCREENS = {
  "": renderHome,
  setup: renderSetup,
  actions: renderActions,
  rules: renderRules,
  tickets: renderTickets,
  ticket: renderTicket,
  create: renderCreate,
};
const main = document.getElementById("main");
const account = document.getElementById("account");
let localSignIn = false;

// ServiceNow's consent sends the admin back with ?servicenow=connected|error&reason=...: kept for
// the setup screen once, then taken out of the address so a reload does not repeat it.
function takeOutcome() {
  const params = new URLSearchParams(location.search);
  const result = params.get("servicenow");
  if (!result) return null;
  history.replaceState(null, "", `${location.pathname}#/setup`);
  return { result, reason: params.get("reason") || "" };
}

const context = { outcome: takeOutcome(), refresh: () => show() };

// Each screen renders into a view of its own: one still loading when the user moves on keeps
// writing into its view, which is no longer on the page, instead of into the next screen.
async function show() {
  const name = location.hash.replace(/^#\/?/, "").split("?")[0];
  const screen = SCREENS[name] || renderHome;
  const view = h("div", { class: "view" });
  main.replaceChildren(view);
  if (localSignIn && !signedIn()) {
    view.append(h("h1", { text: "Sign in" }), h("p", { text: "Use “Sign in as” at the top to choose a tenant, user and role." }));
    return;
  }
  try {
    await screen(view, context);
  } catch (error) {
    view.append(errorBox(error));
  }
  if (view.isConnected) document.title = `${view.querySelector("h1")?.textContent || "Home"}: Security portal`;
}

async function start() {
  try {
    localSignIn = Boolean((await api("GET", "portal/config")).localSignIn);
  } catch {
    localSignIn = false;
  }
  const changed = () => {
    renderAccount(account, changed);
    show();
  };
  if (localSignIn) renderAccount(account, changed);
  window.addEventListener("hashchange", () => {
    show().then(() => main.focus());
  });
  await show();
}

start();

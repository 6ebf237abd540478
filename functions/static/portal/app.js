// The portal's entry: sign-in, the OAuth outcome in the address, and one screen per hash route.

import { api } from "./api.js";
import { renderActions } from "./actions.js";
import { renderHome } from "./home.js";
import { renderSetup } from "./setup.js";
import { renderAccount, signedIn } from "./signin.js";
import { renderCreate, renderTicket, renderTickets } from "./tickets.js";
import { errorBox, h } from "./ui.js";

const SCREENS = {
  "": renderHome,
  setup: renderSetup,
  actions: renderActions,
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

async function show() {
  const name = location.hash.replace(/^#\/?/, "").split("?")[0];
  const screen = SCREENS[name] || renderHome;
  main.replaceChildren();
  if (localSignIn && !signedIn()) {
    main.append(h("h1", { text: "Sign in" }), h("p", { text: "Use “Sign in as” at the top to choose a tenant, user and role." }));
    return;
  }
  try {
    await screen(main, context);
  } catch (error) {
    main.append(errorBox(error));
  }
  document.title = `${main.querySelector("h1")?.textContent || "Home"}: Security portal`;
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

// Local sign-in: offered only when the server trusts a principal the page builds (LOCAL_DEV=true).
// The header has Easy Auth's shape: base64 of {auth_typ, claims, name_typ, role_typ}.

import { principal, setPrincipal } from "./api.js";
import { field, h, select } from "./ui.js";

const ROLES = [
  ["Connector.Admin", "Connector.Admin (everything)"],
  ["Tickets.ReadWrite", "Tickets.ReadWrite (create and read)"],
  ["Tickets.Read", "Tickets.Read (read only)"],
];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const WHO_KEY = "portal.who";

async function objectId(tenant, user) {
  if (UUID.test(user)) return user;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${tenant}/${user}`)));
  const hex = Array.from(digest.slice(0, 16), (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export async function encodePrincipal(tenant, user, role) {
  const claims = [
    { typ: "http://schemas.microsoft.com/identity/claims/tenantid", val: tenant },
    { typ: "http://schemas.microsoft.com/identity/claims/objectidentifier", val: await objectId(tenant, user) },
    { typ: "name", val: user },
    { typ: "roles", val: role },
  ];
  const json = JSON.stringify({ auth_typ: "aad", claims, name_typ: "name", role_typ: "roles" });
  const bytes = new TextEncoder().encode(json);
  return btoa(Array.from(bytes, (byte) => String.fromCharCode(byte)).join(""));
}

export function signedIn() {
  return Boolean(principal());
}

export function renderAccount(container, onChange) {
  container.replaceChildren();
  if (signedIn()) {
    const who = sessionStorage.getItem(WHO_KEY) || "";
    const signOut = () => {
      setPrincipal(null);
      sessionStorage.removeItem(WHO_KEY);
      onChange();
    };
    container.append(h("span", { class: "who" }, who), h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"));
    return;
  }
  const form = signInForm(onChange);
  const open = h("button", { type: "button", "aria-expanded": "false", onclick: () => toggle() }, "Sign in as");
  const toggle = () => {
    form.hidden = !form.hidden;
    open.setAttribute("aria-expanded", String(!form.hidden));
    if (!form.hidden) form.querySelector("input").focus();
  };
  form.hidden = true;
  container.append(open, form);
}

function signInForm(onChange) {
  const tenant = h("input", { name: "tenant", required: true, value: "11111111-1111-1111-1111-111111111111", autocomplete: "off" });
  const user = h("input", { name: "user", required: true, value: "Ada Admin", autocomplete: "off" });
  const role = select("role", ROLES, "Connector.Admin");
  const submit = async (event) => {
    event.preventDefault();
    setPrincipal(await encodePrincipal(tenant.value.trim(), user.value.trim(), role.value));
    sessionStorage.setItem(WHO_KEY, `${user.value.trim()} (${role.value}) in ${tenant.value.trim()}`);
    onChange();
  };
  return h(
    "form",
    { class: "signin card", "aria-label": "Sign in as", onsubmit: submit },
    h("p", { class: "hint", text: "Local development only: the server trusts this identity because LOCAL_DEV=true." }),
    field("Tenant", tenant, "The tenant id (a GUID)."),
    field("User", user),
    field("Role", role),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
}

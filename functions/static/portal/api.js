// Every call to the API: same origin, JSON in and out, errors as ApiError with the words to show.

const PRINCIPAL_KEY = "portal.principal";

export class ApiError extends Error {
  constructor(status, body, requestId) {
    const detail = body && body.error ? body.error : {};
    super(detail.message || describeStatus(status));
    this.status = status;
    this.code = detail.code || "";
    this.fields = Array.isArray(detail.fields) ? detail.fields : [];
    this.requestId = detail.requestId || requestId || "";
  }
}

function describeStatus(status) {
  if (status === 0) return "The portal could not reach the server. Check your network and try again.";
  if (status === 404) return "The server does not offer this yet (404 Not Found).";
  return `The server answered with status ${status}.`;
}

export function principal() {
  return sessionStorage.getItem(PRINCIPAL_KEY);
}

export function setPrincipal(value) {
  if (value) sessionStorage.setItem(PRINCIPAL_KEY, value);
  else sessionStorage.removeItem(PRINCIPAL_KEY);
}

export async function api(method, path, { body, headers } = {}) {
  const sent = { Accept: "application/json", ...headers };
  const local = principal();
  if (local) sent["X-MS-CLIENT-PRINCIPAL"] = local;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api/${path}`, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, null, "");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("X-Request-Id"));
  return data;
}

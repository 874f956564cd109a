// Every call the console makes to the service: the session cookie goes by
// itself (same origin); state-changing calls carry the session's CSRF token.

let csrfToken = "";

export function setCsrf(token) {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// One listener learns that the session is gone (any 401), to show "Not signed in".
let onSignedOut = () => {};
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export async function call(method, path, body, options = {}) {
  const headers = { Accept: options.accept || "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  let payload;
  if (typeof body === "string") {
    payload = body;
    headers["Content-Type"] = options.contentType || "text/plain; charset=utf-8";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: payload, credentials: "same-origin", cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "unreachable", "The service cannot be reached: " + error.message);
  }
  if (response.ok && options.raw) return response;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || response.statusText, data);
    if (response.status === 401 && !options.quiet) onSignedOut(failure);
    throw failure;
  }
  return data;
}

export const part = encodeURIComponent;

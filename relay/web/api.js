// The relay's client API over fetch, authenticated by the HttpOnly session cookie.

/** A refused request: `status` 0 means the relay could not be reached at all; `files` are
 * the files a refusal concerns (a merge's conflicts), when it names any. */
export class ApiError extends Error {
  constructor(status, code, message, files = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.files = files;
  }
}

let signedOutHandler = () => {};

/** Called (once per 401) when the relay no longer accepts this browser's cookie. */
export function onSignedOut(handler) {
  signedOutHandler = handler;
}

export function signedOut() {
  signedOutHandler();
}

/** `api('POST', '/api/...', body)` → the decoded JSON body (null for 204); throws ApiError. */
export async function api(method, path, body) {
  // X-Requested-With on every call: the relay may require it for cookie-authenticated
  // writes (a CSRF guard a cross-site form cannot forge).
  const headers = { Accept: 'application/json', 'X-Requested-With': 'rcd' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'unreachable', 'Cannot reach the relay. Check your connection.');
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.status === 401) {
    signedOut();
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? `The relay answered ${response.status} ${response.statusText}`,
      Array.isArray(error.files) ? error.files : [],
    );
  }
  return data;
}

export const sessionPath = (id) => `/api/sessions/${encodeURIComponent(id)}`;

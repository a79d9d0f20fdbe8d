// The REST API as the console uses it: the public routes under /v1, on this page's own origin,
// with the session token from POST /v1/auth/login. The internal key a user signs in with is
// sent once and never stored; the session token lives in sessionStorage (this tab only, gone
// when the tab closes).

const SESSION_STORAGE_KEY = 'keyledger.session';

/** An error answer of the API (`{"error": {"code", "message", "field"}}`), or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

let unauthorizedHandler = () => {};

/** Called with the ApiError whenever an authenticated request is refused with 401. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export const session = {
  /** The current session `{token, expires_at}`, or null when there is none or it has ended. */
  current() {
    let stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(SESSION_STORAGE_KEY) ?? 'null');
    } catch {
      stored = null;
    }
    if (!stored || typeof stored.token !== 'string' || typeof stored.expires_at !== 'string') {
      return null;
    }
    if (Date.parse(stored.expires_at) <= Date.now()) {
      session.clear();
      return null;
    }
    return stored;
  },
  store(token, expiresAt) {
    sessionStorage.setItem(SESSION_STORAGE_KEY, JSON.stringify({ token, expires_at: expiresAt }));
  },
  clear() {
    sessionStorage.removeItem(SESSION_STORAGE_KEY);
  },
};

/** Exchanges an internal key for a session token; the key goes no further than this request. */
export async function signIn(key) {
  const answer = await request('POST', '/v1/auth/login', { body: { key }, authenticated: false });
  session.store(answer.token, answer.expires_at);
  return answer;
}

/** A fresh value for the `Idempotency-Key` header: one per form, so a double submit creates one key. */
export function newRequestId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * One API call. Resolves to the parsed JSON body; rejects with an ApiError carrying the API's own
 * code and message, so the console shows what the API said.
 */
export async function request(method, path, { body, authenticated = true, requestId, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }
  if (requestId) {
    headers['Idempotency-Key'] = requestId;
  }
  if (authenticated) {
    const current = session.current();
    if (!current) {
      const error = new ApiError(401, 'session_ended', 'Your session has ended. Sign in again.');
      unauthorizedHandler(error);
      throw error;
    }
    headers.Authorization = `Bearer ${current.token}`;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
      signal,
    });
  } catch (error) {
    // An aborted call (a preview overtaken by newer input) is the caller's doing, not a failure.
    if (signal?.aborted) {
      throw error;
    }
    throw new ApiError(0, 'network', 'The vault could not be reached. Check that it is running, then try again.');
  }
  const text = await response.text();
  let payload = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (response.ok) {
    return payload;
  }
  throw refusal(response, payload, authenticated);
}

/**
 * Downloads one file the API serves (such as `GET /v1/ingestions/{id}/files/{path}`) with the
 * session's token, and hands it to the browser as `filename`. A plain link cannot: it would
 * carry no `Authorization` header, and a token never goes into a URL.
 */
export async function download(path, filename) {
  const current = session.current();
  if (!current) {
    const error = new ApiError(401, 'session_ended', 'Your session has ended. Sign in again.');
    unauthorizedHandler(error);
    throw error;
  }
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${current.token}` },
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    throw new ApiError(0, 'network', 'The vault could not be reached. Check that it is running, then try again.');
  }
  if (!response.ok) {
    let payload = null;
    try {
      payload = JSON.parse(await response.text());
    } catch {
      payload = null;
    }
    throw refusal(response, payload, true);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has long started a minute later; then the memory can go.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The ApiError for a refused call, reported to the sign-out handler when it is a 401. */
function refusal(response, payload, authenticated) {
  const detail = payload && typeof payload.error === 'object' ? payload.error : null;
  const error = new ApiError(
    response.status,
    detail?.code ?? `http_${response.status}`,
    detail?.message ?? `The vault answered ${response.status} ${response.statusText}.`.trim(),
    detail?.field ?? null,
  );
  if (response.status === 401 && authenticated) {
    unauthorizedHandler(error);
  }
  return error;
}

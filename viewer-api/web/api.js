// The one way the console talks to the server: JSON over /api/v1, the session in an
// HttpOnly cookie (the page never sees the token). A 401 means the session ended: the
// app shows sign-in and comes back to where the user was.

import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

const IDLE_MS = 15 * 60 * 1000;
let onAuthLost = () => {};
let idleTimer = null;

export function setAuthLostHandler(f) {
  onAuthLost = f;
}

// The server ends a session after 15 minutes without a request: check just after that.
function armIdle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => api('/me').catch(() => {}), IDLE_MS + 2000);
}

export function stopIdle() {
  clearTimeout(idleTimer);
}

// `withHeaders`: the answer is `{ data, headers }` (for paged lists).
export async function api(path, { method = 'GET', body, signal, withHeaders = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(`/api/v1${path}`, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, t('error.network'));
  }
  if (r.status === 401 && path !== '/login') {
    onAuthLost();
    throw new ApiError(401, t('signin.expired'));
  }
  if (!r.ok) {
    let msg = r.statusText;
    try {
      msg = (await r.json()).error || msg;
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, msg, r.headers.get('retry-after'));
  }
  armIdle();
  if (r.status === 204) return null;
  const type = r.headers.get('content-type') || '';
  const data = type.includes('json') ? await r.json() : await r.text();
  return withHeaders ? { data, headers: r.headers } : data;
}

export function query(o) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

// The reason a footage request carries: a case reference for police, a purpose otherwise.
export function reasonParams(reason) {
  return reason.case ? { case: reason.case } : { purpose: reason.purpose };
}

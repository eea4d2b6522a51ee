/* global document, location */
// Small helpers shared by the pages. Cookies carry the session; every call is same-origin JSON.

/** Calls the host's JSON API; resolves to the parsed body, rejects with an Error carrying `code`. */
export async function api(path, { method = 'GET', body } = {}) {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(data?.error?.message ?? `Request failed (${res.status})`);
    err.code = data?.error?.code ?? 'http_error';
    err.status = res.status;
    throw err;
  }
  return data;
}

/** Shows `message` in an error element, or hides it when message is empty. */
export function showError(el, message) {
  el.textContent = message ?? '';
  el.hidden = !message;
}

/** The sign-in page, told to come back here afterwards (this page's path and query, same origin only). */
export function signInAgainUrl(signedOut = true) {
  const next = encodeURIComponent(location.pathname + location.search);
  return `/?${signedOut ? 'signed-out&' : ''}next=${next}`;
}

let signingOut = false;
/** True once this page's Sign out button was pressed (its own socket then drops; that is not news). */
export const isSigningOut = () => signingOut;

/** Wires the header's user name and sign-out button; sends signed-out visitors to the sign-in page. */
export async function setupHeader() {
  document.getElementById('logout')?.addEventListener('click', async () => {
    signingOut = true;
    await api('/api/auth/logout', { method: 'POST' }).catch(() => {});
    location.assign('/');
  });
  try {
    const me = await api('/api/me');
    const who = document.getElementById('whoami');
    if (who) who.textContent = me.user.username;
    return me;
  } catch (err) {
    if (err.status === 401) location.assign(signInAgainUrl(false));
    throw err;
  }
}

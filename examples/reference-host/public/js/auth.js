/* global document, location, URLSearchParams */
import { api, showError } from './api.js';

const form = document.getElementById('auth-form');
const errorEl = document.getElementById('auth-error');

const params = new URLSearchParams(location.search);
/**
 * Where to go after signing in: the `next` page when it is a path of this site (`/…`, never `//host` or
 * `/\host`, which browsers read as another site), else the thread list.
 */
export function returnPath(next) {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//') || next.includes('\\')) {
    return '/threads';
  }
  // Browsers drop tabs and newlines from addresses: `/\t/host` would be `//host`.
  if ([...next].some((ch) => ch < ' ' || ch === '\x7f')) return '/threads';
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : '/threads';
  } catch {
    return '/threads';
  }
}

// Sent here by a page that found its session gone (signed out in another tab, or expired).
if (params.has('signed-out')) {
  showError(errorEl, 'You were signed out. Sign in again to continue.');
}

// A failed Google sign-in comes back as /?oidc_error=<code>.
const OIDC_ERRORS = {
  oidc_state_mismatch: 'That Google sign-in was not started here or took too long. Try again.',
  oidc_nonce_mismatch: 'That Google sign-in answer was not for this sign-in. Try again.',
  oidc_denied: 'Google did not sign you in.',
  oidc_unavailable: 'Google sign-in cannot be reached right now. Try again shortly.',
  email_not_verified: 'Google has not verified the email address of that account, so it cannot be used here.',
  rate_limited: 'Too many sign-ins. Wait a few minutes and try again.',
  store_unavailable: 'Signing in is not possible right now. Try again shortly.',
};
const oidcError = new URLSearchParams(location.search).get('oidc_error');
if (oidcError) showError(errorEl, OIDC_ERRORS[oidcError] ?? 'Google sign-in failed. Try again.');
api('/api/auth/methods')
  .then((methods) => {
    if (!methods?.google) return;
    const next = new URLSearchParams(location.search).get('next');
    const link = document.getElementById('google');
    if (next) link.href = `/auth/oidc/start?next=${encodeURIComponent(next)}`;
    document.getElementById('google-signin').hidden = false;
  })
  .catch(() => {});

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const action = e.submitter?.dataset.action === 'signup' ? 'signup' : 'login';
  showError(errorEl, '');
  for (const b of form.querySelectorAll('button')) b.disabled = true;
  try {
    await api(`/api/auth/${action}`, {
      method: 'POST',
      body: { username: form.username.value, password: form.password.value },
    });
    location.assign(returnPath(params.get('next')));
  } catch (err) {
    showError(errorEl, err.message);
  } finally {
    for (const b of form.querySelectorAll('button')) b.disabled = false;
  }
});

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

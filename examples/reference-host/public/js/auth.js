/* global document, location, URLSearchParams */
import { api, showError } from './api.js';

const form = document.getElementById('auth-form');
const errorEl = document.getElementById('auth-error');

// Sent here by a page that found its session gone (signed out in another tab, or expired).
if (new URLSearchParams(location.search).has('signed-out')) {
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
    location.assign('/threads');
  } catch (err) {
    showError(errorEl, err.message);
  } finally {
    for (const b of form.querySelectorAll('button')) b.disabled = false;
  }
});

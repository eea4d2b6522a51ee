/* global document, location */
import { api, showError } from './api.js';

const form = document.getElementById('auth-form');
const errorEl = document.getElementById('auth-error');

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

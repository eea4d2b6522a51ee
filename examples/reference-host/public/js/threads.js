/* global document, location */
import { api, setupHeader, showError } from './api.js';
import { setupSidebar } from './sidebar.js';

const form = document.getElementById('new-thread');
const errorEl = document.getElementById('new-thread-error');

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  showError(errorEl, '');
  try {
    const title = form.title.value.trim();
    const t = await api('/api/threads', { method: 'POST', body: title ? { title } : {} });
    location.assign(`/threads/${encodeURIComponent(t.threadId)}`);
  } catch (err) {
    showError(errorEl, err.message);
  }
});

const sidebar = setupSidebar();
await setupHeader();
await sidebar.refresh();

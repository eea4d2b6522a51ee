/* global document, location */
import { api, setupHeader, showError } from './api.js';

const list = document.getElementById('threads');
const empty = document.getElementById('no-threads');
const errorEl = document.getElementById('threads-error');
const form = document.getElementById('new-thread');

function render(threads) {
  list.replaceChildren(
    ...threads.map((t) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = `/threads/${encodeURIComponent(t.threadId)}`;
      a.textContent = t.title;
      const when = document.createElement('span');
      when.className = 'muted';
      when.textContent = ` · ${new Date(t.updatedAt).toLocaleString()}`;
      li.append(a, when);
      return li;
    }),
  );
  empty.hidden = threads.length > 0;
}

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

await setupHeader();
try {
  render((await api('/api/threads')).threads);
} catch (err) {
  showError(errorEl, err.message);
}

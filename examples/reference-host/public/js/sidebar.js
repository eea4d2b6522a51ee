/* global document, location, CSS */
// The thread sidebar of the host's pages: New thread, the list (the open thread highlighted), rename and delete
// per thread, and on narrow screens a menu button that opens it over the page. Host-only: not in <agent-chat>.
import { api, showError } from './api.js';

// The sidebar's content and its delete confirm, written once here for every page that has a sidebar. They are
// put in as this module loads, before the importing page's script runs (and before it awaits anything), so
// they are there as early as static markup would be.
const SIDEBAR_HTML = `
  <button id="sidebar-new" type="button" class="new-thread">+ New thread</button>
  <p id="threads-error" class="error" role="alert" hidden></p>
  <ul id="threads" class="threads"></ul>
  <p id="no-threads" class="muted" hidden>No threads yet.</p>`;
const CONFIRM_DELETE_HTML = `
  <form method="dialog">
    <p id="confirm-delete-text"></p>
    <div class="row end">
      <button value="cancel" class="secondary" autofocus>Cancel</button>
      <button value="delete" class="danger">Delete</button>
    </div>
  </form>`;

document.getElementById('sidebar').innerHTML = SIDEBAR_HTML;
const dialog = document.createElement('dialog');
dialog.id = 'confirm-delete';
dialog.setAttribute('aria-labelledby', 'confirm-delete-text');
dialog.innerHTML = CONFIRM_DELETE_HTML;
document.body.append(dialog);

const ICONS = {
  rename: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4" /></svg>',
  delete:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6" /></svg>',
};
/** What a thread is called in the list and the header while it has no title yet. */
export const displayTitle = (t) => (t?.title ? t.title : 'New thread');

function iconButton(kind, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `icon-button ${kind}`;
  b.setAttribute('aria-label', label);
  b.title = label;
  b.innerHTML = ICONS[kind];
  return b;
}

/**
 * Wires the sidebar. `activeId` is the open thread (highlighted); returns `refresh()` to reload the list
 * (after a title may have changed) and `threads()` (the last list).
 */
export function setupSidebar({ activeId = null, onRenamed = () => {} } = {}) {
  const list = document.getElementById('threads');
  const empty = document.getElementById('no-threads');
  const errorEl = document.getElementById('threads-error');
  const menu = document.getElementById('menu');
  const scrim = document.getElementById('scrim');
  let threads = [];
  let editing = null;

  const setOpen = (open) => {
    document.body.classList.toggle('sidebar-open', open);
    menu?.setAttribute('aria-expanded', String(open));
  };
  menu?.addEventListener('click', () => {
    const open = !document.body.classList.contains('sidebar-open');
    setOpen(open);
    if (open) (list.querySelector('[aria-current] a') ?? document.getElementById('sidebar-new')).focus();
  });
  scrim?.addEventListener('click', () => setOpen(false));
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || !document.body.classList.contains('sidebar-open') || dialog?.open || editing)
      return;
    setOpen(false);
    menu?.focus();
  });

  document.getElementById('sidebar-new').addEventListener('click', async () => {
    showError(errorEl, '');
    try {
      const t = await api('/api/threads', { method: 'POST', body: {} });
      location.assign(`/threads/${encodeURIComponent(t.threadId)}`);
    } catch (err) {
      showError(errorEl, err.message);
    }
  });

  function render() {
    list.replaceChildren(
      ...threads.map((t) => {
        const li = document.createElement('li');
        li.className = 'thread';
        li.dataset.threadId = t.threadId;
        const a = document.createElement('a');
        a.className = 'thread-link';
        a.href = `/threads/${encodeURIComponent(t.threadId)}`;
        a.textContent = displayTitle(t);
        a.title = displayTitle(t);
        if (t.threadId === activeId) {
          li.setAttribute('aria-current', 'page');
          a.setAttribute('aria-current', 'page');
        }
        const rename = iconButton('rename', `Rename “${displayTitle(t)}”`);
        rename.addEventListener('click', () => startRename(li, t));
        const del = iconButton('delete', `Delete “${displayTitle(t)}”`);
        del.addEventListener('click', () => confirmDelete(t));
        const actions = document.createElement('span');
        actions.className = 'actions';
        actions.append(rename, del);
        li.append(a, actions);
        return li;
      }),
    );
    empty.hidden = threads.length > 0;
  }

  function startRename(li, t) {
    editing = t.threadId;
    const form = document.createElement('form');
    form.className = 'rename-form';
    const input = document.createElement('input');
    input.value = t.title;
    input.maxLength = 200;
    input.required = true;
    input.setAttribute('aria-label', 'New title');
    const save = document.createElement('button');
    save.type = 'submit';
    save.textContent = 'Save';
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'secondary';
    cancel.textContent = 'Cancel';
    form.append(input, save, cancel);
    li.replaceChildren(form);
    input.focus();
    input.select();
    const done = (focusId) => {
      editing = null;
      render();
      list.querySelector(`[data-thread-id="${CSS.escape(focusId)}"] .rename`)?.focus();
    };
    cancel.addEventListener('click', () => done(t.threadId));
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        e.stopPropagation();
        done(t.threadId);
      }
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const title = input.value.trim();
      if (!title) return done(t.threadId);
      showError(errorEl, '');
      try {
        const renamed = await api(`/api/threads/${encodeURIComponent(t.threadId)}`, {
          method: 'PATCH',
          body: { title },
        });
        threads = threads.map((x) => (x.threadId === renamed.threadId ? renamed : x));
        if (renamed.threadId === activeId) onRenamed(renamed);
      } catch (err) {
        showError(errorEl, err.message);
      }
      done(t.threadId);
    });
  }

  // One close listener for the dialog's whole life. A listener added per opening could be handed the close
  // event of the previous opening (Escape, then Delete pressed again before that event fired) and then miss the
  // close that confirms. A close event that arrives while the dialog is open again is such a late one: ignored.
  let pendingDelete = null;
  let deleteOpener = null;
  dialog?.addEventListener('close', async () => {
    if (dialog.open || !pendingDelete) return;
    const t = pendingDelete;
    const opener = deleteOpener;
    pendingDelete = null;
    deleteOpener = null;
    if (dialog.returnValue !== 'delete') return opener?.focus?.();
    showError(errorEl, '');
    try {
      await api(`/api/threads/${encodeURIComponent(t.threadId)}`, { method: 'DELETE' });
    } catch (err) {
      showError(errorEl, err.message);
      return opener?.focus?.();
    }
    if (t.threadId === activeId) return location.assign('/threads');
    const i = threads.findIndex((x) => x.threadId === t.threadId);
    threads = threads.filter((x) => x.threadId !== t.threadId);
    render();
    const next = list.querySelectorAll('.thread-link')[Math.min(i, threads.length - 1)];
    (next ?? document.getElementById('sidebar-new')).focus();
  });

  function confirmDelete(t) {
    deleteOpener = document.activeElement;
    pendingDelete = t;
    document.getElementById('confirm-delete-text').textContent =
      `Delete “${displayTitle(t)}”? Its messages are removed for good.`;
    dialog.returnValue = '';
    dialog.showModal();
  }

  async function refresh() {
    try {
      threads = (await api('/api/threads')).threads;
      showError(errorEl, '');
    } catch (err) {
      showError(errorEl, err.message);
      return;
    }
    // Never pull the list from under a rename in progress or a focused control.
    if (editing || list.contains(document.activeElement)) return;
    render();
  }

  return { refresh, threads: () => threads };
}

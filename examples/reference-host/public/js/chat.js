/* global document, location */
import { api, isSigningOut, setupHeader, signInAgainUrl } from './api.js';
import { displayTitle, setupSidebar } from './sidebar.js';

const threadId = decodeURIComponent(location.pathname.split('/').pop() ?? '');
const profileEl = document.getElementById('profile');
const profileEmpty = document.getElementById('profile-empty');

/** Renders the profile panel; `changed` names keys to highlight (they just changed). */
function renderProfile(profile, changed = []) {
  const entries = Object.entries(profile ?? {});
  profileEl.replaceChildren(
    ...entries.flatMap(([key, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = key;
      const dd = document.createElement('dd');
      dd.dataset.key = key;
      dd.textContent = typeof value === 'string' ? value : JSON.stringify(value);
      if (changed.includes(key)) dd.classList.add('updated');
      return [dt, dd];
    }),
  );
  profileEmpty.hidden = entries.length > 0;
}

// The thread first, then the profile: every profile change at or before `thread.lastSeq` is already in it.
const thread = await api(`/api/threads/${encodeURIComponent(threadId)}`);
const me = await setupHeader();
let current = me.profile ?? {};
renderProfile(current);

const showTitle = (t) => {
  document.getElementById('thread-title').textContent = displayTitle(t);
  document.title = `Threadline: ${displayTitle(t)}`;
};
showTitle(thread);
const sidebar = setupSidebar({ activeId: threadId, onRenamed: showTitle });
void sidebar.refresh();
/** The title may have been made from the first message: show it in the header and the list. */
async function refreshTitle() {
  await sidebar.refresh();
  const mine = sidebar.threads().find((t) => t.threadId === threadId);
  if (mine) showTitle(mine);
}

const chat = document.createElement('agent-chat');
chat.setAttribute('endpoint', `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
chat.setAttribute('thread-id', threadId);
chat.setAttribute('placeholder', 'Say hello, or “call me Ada”.');
// A tool changed the profile: show it now, no reload. The element replays the thread's history first; those
// older changes are skipped so they cannot overwrite a newer profile (changed from another thread).
chat.addEventListener('agent-chat:event', (e) => {
  const event = e.detail.event;
  if (event.type === 'RUN_STARTED' && event.seq > thread.lastSeq && !thread.title) void refreshTitle();
  if (event.type !== 'STATE_CHANGED' || event.scope !== 'profile' || event.seq <= thread.lastSeq) return;
  const next = event.value && typeof event.value === 'object' ? event.value : {};
  const changed = Object.keys(next).filter((k) => JSON.stringify(next[k]) !== JSON.stringify(current[k]));
  current = next;
  renderProfile(current, changed);
});
// A browser hides why a WebSocket upgrade was refused, so a signed-out tab (signed out elsewhere, or its
// session expired: the host then closes its socket) would only see "reconnecting" until it gave up. Whenever
// the connection is in trouble, ask the API whether the session still holds, and go to sign-in if not.
let checking = false;
async function checkSession() {
  if (checking || isSigningOut()) return;
  checking = true;
  try {
    await api('/api/me');
  } catch (err) {
    if (err.status === 401 && !isSigningOut()) location.assign(signInAgainUrl());
  } finally {
    checking = false;
  }
}
chat.addEventListener('agent-chat:connection', (e) => {
  if (e.detail.state === 'reconnecting' || e.detail.state === 'disconnected') void checkSession();
});
chat.addEventListener('agent-chat:error', (e) => {
  if (e.detail.code === 'thread_deleted') {
    // Deleted in another tab or on another device: say so, and drop it from the list.
    document.getElementById('thread-gone').hidden = false;
    chat.remove();
    void sidebar.refresh();
    return;
  }
  if (e.detail.fatal) void checkSession();
});
chat.addEventListener('agent-chat:run-finished', () => void refreshTitle());
document.getElementById('chat-slot').append(chat);

import { html, nothing, type TemplateResult } from 'lit';
import type { AgentChat } from './agent-chat-element.js';
import { composer } from './composer.js';
import type { ConnectionState } from './connection.js';
import { messageRow, onListClick } from './messages.js';

const STATUS_TEXT: Record<ConnectionState, string> = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Connection lost. Reconnecting…',
  disconnected: 'Disconnected',
};

/** The element's shadow content: status bar, conversation, live region and composer. */
export function renderChat(chat: AgentChat): TemplateResult {
  const state = chat.__connChange.state;
  const items = chat.__model.items;
  if (chat.__rendered.size > items.length + 64) {
    const keep = new Set(items.map((i) => i.key));
    for (const key of chat.__rendered.keys()) if (!keep.has(key)) chat.__rendered.delete(key);
  }
  const running = chat.__model.activeRunId !== undefined;
  // From a send until the first event of its answer: the last row is that message, still pending or running.
  const last = items[items.length - 1];
  const working =
    last?.kind === 'user' &&
    (last.status === 'sending' || (last.status === 'sent' && last.runId === chat.__model.activeRunId));
  let lastRun: string | undefined;
  for (const i of items) if ('runId' in i && i.runId) lastRun = i.runId;
  const status =
    state === 'disconnected' && chat.__stopReason
      ? `Disconnected: ${chat.__stopReason}`
      : state === 'reconnecting'
        ? `${STATUS_TEXT.reconnecting} (attempt ${chat.__connChange.attempt})`
        : STATUS_TEXT[state];
  return html`
    <div part="status" class="status" data-state=${state}>
      <span class="dot" aria-hidden="true"></span>
      <span>${status}</span>
      ${
        state === 'disconnected'
          ? html`<button type="button" class="link" part="reconnect-button" @click=${() => chat.reconnect()}>
              Reconnect
            </button>`
          : nothing
      }
    </div>
    <div class="viewport">
      ${
        !chat.__stick && items.length
          ? html`<button
              type="button"
              part="jump-button"
              class="jump"
              aria-label="Scroll to the latest message"
              @click=${jump}
            >
              ↓ Latest
            </button>`
          : nothing
      }
      <section
        part="messages"
        class="messages"
        aria-label="Conversation"
        tabindex="0"
        @scroll=${onScroll}
        @click=${onListClick}
      >
        ${
          items.length === 0
            ? html`<p part="placeholder" class="placeholder">${chat.placeholder}</p>`
            : items.map((i) =>
                messageRow(
                  chat,
                  i,
                  !running && !chat.readonly && (i.kind === 'run-error' ? i.runId === lastRun : i === last),
                ),
              )
        }
        ${chat.__regenError ? html`<div part="send-error" class="run-error">${chat.__regenError}</div>` : nothing}
        ${
          working
            ? html`<div part="working" class="working">
                <span class="dots" aria-hidden="true"><i></i><i></i><i></i></span>
                <span class="sr-only">Working on it…</span>
              </div>`
            : nothing
        }
      </section>
    </div>
    <div class="sr-only" role="status" aria-live="polite" aria-atomic="true">${chat.__announcement}</div>
    ${chat.readonly ? nothing : composer(chat, running)}
  `;
}

// Listeners below are plain functions: lit calls a template's listeners with `this` set to the element.

function onScroll(this: AgentChat, e: Event): void {
  const list = e.currentTarget as HTMLElement;
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  if (stick !== this.__stick) {
    this.__stick = stick;
    this.requestUpdate(); // shows or hides the jump button
  }
}

function jump(this: AgentChat): void {
  const list = this.renderRoot.querySelector<HTMLElement>('.messages');
  if (!list) return;
  list.scrollTop = list.scrollHeight;
  this.__stick = true;
  list.focus({ preventScroll: true }); // the button goes away; keep focus in the conversation
  this.requestUpdate();
}

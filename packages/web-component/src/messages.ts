import { html, nothing, type TemplateResult } from 'lit';
import type { AgentChat } from './agent-chat-element.js';
import { toolCall } from './approvals.js';
import type { AgentChatRegenerateDetail } from './events.js';
import { renderMarkdown } from './markdown.js';
import type { AssistantItem, ChatItem, UserItem } from './thread-model.js';
import { runErrorText } from './words.js';

/** How long a Copy button says "Copied". */
const COPIED_MS = 1_500;

/**
 * One row of the conversation. `retryable`: the row is the last answer or the last failed run, and no run is
 * active, so it offers Regenerate or Retry.
 */
export function messageRow(chat: AgentChat, item: ChatItem, retryable: boolean): TemplateResult {
  switch (item.kind) {
    case 'user': {
      // The bubble uses white-space: pre-wrap, so the template must not put whitespace around the text.
      // prettier-ignore
      const bubble = html`<div part="message user-message" class="msg user" data-status=${item.status}>${item.text}</div>`;
      return html`<div class="row mine">
          ${bubble}
          ${item.status === 'failed' ? nothing : actions(chat, item.key, item.text, item.ts, 'message')}
        </div>
        ${
          item.status === 'failed'
            ? html`<div part="send-error" class="failed">
                <span>Not sent. ${item.error ?? ''}</span>
                ${
                  chat.readonly
                    ? nothing
                    : html`<button
                        type="button"
                        class="link"
                        part="retry-button"
                        aria-label="Retry sending"
                        @click=${() => resend(chat, item)}
                      >
                        Retry
                      </button>`
                }
              </div>`
            : nothing
        }`;
    }
    case 'assistant':
      return html`<div class="row">
        <div
          part="message assistant-message"
          class="msg assistant"
          data-message-id=${item.messageId}
          aria-busy=${item.complete ? 'false' : 'true'}
        >
          ${markdown(chat, item)}
        </div>
        ${
          item.complete
            ? actions(chat, item.key, item.text, item.ts, 'answer', retryable ? item.runId : '')
            : nothing
        }
      </div>`;
    case 'tool':
      return toolCall(chat, item);
    case 'history-divider':
      return html`<div part="history-divider" class="divider" role="separator" data-run-id=${item.runId}>
        ${item.compacted ? 'Earlier messages summarised' : 'The agent sees only the recent part of this conversation'}
      </div>`;
    case 'run-error':
      return html`<div
        part="run-error"
        class="run-error"
        data-code=${item.code ?? ''}
        data-run-id=${item.runId}
      >
        <span>${runErrorText(item.code)}</span>
        ${
          retryable && chat.__model.userMessageOf(item.runId)
            ? html`<button
                type="button"
                class="link"
                part="retry-button"
                aria-label="Retry this message"
                ?disabled=${!chat.__canSend()}
                @click=${() => retryRun(chat, item.runId)}
              >
                Retry
              </button>`
            : nothing
        }
      </div>`;
  }
}

/** The row under a message: Copy, Regenerate (when `regenerate` names the run to redo) and its time. */
function actions(
  chat: AgentChat,
  key: string,
  text: string,
  ts: number,
  what: string,
  regenerate?: string,
): TemplateResult {
  const state = chat.__copied === key ? 'Copied' : chat.__copied === `!${key}` ? 'Copy failed' : 'Copy';
  return html`<div part="message-actions" class="meta">
    <button
      type="button"
      class="link"
      part="copy-button"
      aria-label=${state === 'Copy' ? `Copy ${what}` : state}
      @click=${() => void copy(chat, text, key)}
    >
      ${state}
    </button>
    ${
      regenerate
        ? html`<button
            type="button"
            class="link"
            part="regenerate-button"
            aria-label="Regenerate the answer"
            ?disabled=${!chat.__canSend()}
            @click=${() => retryRun(chat, regenerate)}
          >
            Regenerate
          </button>`
        : nothing
    }
    ${timeOf(ts)}
  </div>`;
}

function timeOf(ts: number): TemplateResult {
  const d = new Date(ts);
  const today = d.toDateString() === new Date().toDateString();
  return html`<time datetime=${d.toISOString()} title=${d.toLocaleString()}
    >${today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}</time
  >`;
}

/** An answer's Markdown as DOM, kept per item and rebuilt only when the item's text changed. */
function markdown(chat: AgentChat, item: AssistantItem): HTMLDivElement {
  let entry = chat.__rendered.get(item.key);
  if (!entry) {
    entry = { el: document.createElement('div'), version: -1 };
    chat.__rendered.set(item.key, entry);
  }
  if (entry.version !== item.version) {
    entry.el.replaceChildren(renderMarkdown(item.text));
    for (const pre of entry.el.querySelectorAll('pre')) {
      const wrap = document.createElement('div');
      wrap.className = 'code';
      const button = wrap.appendChild(document.createElement('button'));
      button.type = 'button';
      button.className = 'code-copy link';
      button.setAttribute('part', 'code-copy-button');
      button.setAttribute('aria-label', 'Copy code');
      button.textContent = 'Copy';
      pre.replaceWith(wrap);
      wrap.append(pre);
    }
    if (item.truncated) {
      const note = entry.el.appendChild(document.createElement('p'));
      note.textContent = '(message truncated)';
    }
    entry.version = item.version;
  }
  return entry.el;
}

/** Copies `text`; `key` names the button that says "Copied" for a moment (or a code button itself). */
async function copy(chat: AgentChat, text: string, key: string, button?: HTMLElement): Promise<void> {
  let ok = true;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    ok = false;
    console.warn('agent-chat: copy failed', err);
  }
  chat.__announce(ok ? 'Copied to the clipboard.' : 'Could not copy. Select the text and copy it instead.');
  if (button) {
    button.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => (button.textContent = 'Copy'), COPIED_MS);
  } else {
    chat.__copied = ok ? key : `!${key}`;
    clearTimeout(chat.__copiedTimer);
    chat.__copiedTimer = window.setTimeout(() => {
      chat.__copied = '';
      chat.requestUpdate();
    }, COPIED_MS);
  }
  chat.requestUpdate();
}

/** The conversation's click listener (lit calls it with `this` set to the element): a code block's Copy. */
export function onListClick(this: AgentChat, e: Event): void {
  const button = (e.target as Element).closest?.('.code-copy');
  const code = button?.parentElement?.querySelector('pre');
  if (button && code) void copy(this, code.textContent ?? '', '', button as HTMLElement);
}

/** Retry on a message that was not sent: the same clientMessageId again, which the relay treats idempotently. */
function resend(chat: AgentChat, item: UserItem): void {
  const conn = chat.__conn;
  if (!conn || !item.clientMessageId) return;
  const clientMessageId = item.clientMessageId;
  chat.__attempt(() => {
    conn.send({ type: 'send', threadId: chat.threadId, text: item.text, clientMessageId });
    item.status = 'sending';
    delete item.error;
  });
  chat.requestUpdate();
}

/** Retry on a failed or stopped run, and Regenerate: asks the page first (cancelable), then regenerates. */
function retryRun(chat: AgentChat, runId: string): void {
  const item = chat.__model.userMessageOf(runId);
  if (!item) return;
  const detail: AgentChatRegenerateDetail = { runId, text: item.text };
  if (item.clientMessageId) detail.clientMessageId = item.clientMessageId;
  if (!chat.__emit('agent-chat:regenerate', detail, true)) return; // the page starts the new run itself
  chat.__attempt(() => chat.regenerate());
}

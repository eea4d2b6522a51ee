import { html, nothing, type TemplateResult } from 'lit';
import type { AgentChat } from './agent-chat-element.js';
import type { ToolItem } from './thread-model.js';
import { humanise } from './words.js';

/** A tool call's arguments as indented JSON (the raw text when it is not JSON). */
function readable(args = ''): string {
  try {
    return JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    return args;
  }
}

/**
 * A tool call's row: running, done or failed, and while it waits for the user's approval, its arguments with
 * Approve and Reject (the run goes on once one is pressed).
 */
export function toolCall(chat: AgentChat, item: ToolItem): TemplateResult {
  // The tool's own label ("Updating your profile"), else its name in words; the error text goes to the console.
  const label = item.label ?? humanise(item.toolName);
  const ask = item.approval === 'pending' && item.status === 'running';
  const what = ask
    ? `${label}: needs your approval`
    : item.status === 'running'
      ? `${label}…`
      : item.status === 'done'
        ? label
        : `${label} ${item.approval === 'rejected' ? 'was rejected' : 'did not work'}`;
  return html`<div
    part="tool-call"
    class="tool"
    data-status=${item.status}
    data-approval=${item.approval ?? ''}
    data-tool-call-id=${item.toolCallId}
  >
    ${
      item.status === 'running'
        ? html`<span class="spinner" aria-hidden="true"></span>`
        : html`<span aria-hidden="true">${item.status === 'done' ? '✓' : '✕'}</span>`
    }
    <span>${what}</span>${item.status === 'done' ? html`<span class="sr-only">, done</span>` : nothing}
    ${
      ask
        ? html`<pre part="approval-args">${readable(item.args)}</pre>
            <button part="approve-button" @click=${() => decide(chat, item, true)}>Approve</button>
            <button part="reject-button" class="secondary" @click=${() => decide(chat, item, false)}>
              Reject
            </button>
            ${
              chat.__approvalError && chat.__decidedRun === item.runId
                ? html`<div part="approval-error" class="run-error">${chat.__approvalError}</div>`
                : nothing
            }`
        : nothing
    }
  </div>`;
}

/** Sends the user's decision on a tool call that waits for approval; the log then shows it on every tab. */
function decide(chat: AgentChat, item: ToolItem, approved: boolean): void {
  // A refusal of this decision (ref = the run) shows under the call until the next one is sent.
  chat.__decidedRun = item.runId;
  chat.__approvalError = '';
  chat.__schedule();
  chat.__conn?.send({
    type: 'approve',
    threadId: chat.threadId,
    runId: item.runId,
    toolCallId: item.toolCallId,
    approved,
  });
}

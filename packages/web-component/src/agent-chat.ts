import { LitElement, html, nothing, type PropertyValues, type TemplateResult } from 'lit';
import type { RunErrorEvent, RunFinishedEvent, SequencedAgentEvent } from '@threadline/contracts';
import { LIMITS } from '@threadline/contracts/core';
import { resolveReconnect, type ReconnectOptions } from './backoff.js';
import {
  ChatConnection,
  type ChatProblem,
  type ConnectionChange,
  type ConnectionState,
} from './connection.js';
import { AgentChatError } from './errors.js';
import { renderMarkdown } from './markdown.js';
import { styles } from './styles.js';
import {
  ThreadModel,
  type AssistantItem,
  type ChatItem,
  type ThreadModelLimits,
  type ToolItem,
  type UserItem,
} from './thread-model.js';
import { WebSocketTransport, type ChatTransport } from './transport.js';
import { humanise, problemText, runErrorText } from './words.js';

/** Detail of `agent-chat:event`: one contract event as it arrived (deduplicated, in seq order). */
export interface AgentChatEventDetail {
  event: SequencedAgentEvent;
}

/** Detail of `agent-chat:run-finished`: a run ended, normally (`ok`) or with RUN_ERROR. */
export interface AgentChatRunFinishedDetail {
  runId: string;
  ok: boolean;
  event: RunFinishedEvent | RunErrorEvent;
}

/**
 * Detail of `agent-chat:regenerate`: the user asked for a new answer to the message that `runId` answered (Retry
 * after Stop or an error, or Regenerate on the last answer). Cancel the event to start that run yourself; if
 * nobody cancels it, the element sends a `regenerate` frame: a new answer replaces that run's, with no second
 * user bubble.
 */
export interface AgentChatRegenerateDetail {
  runId: string;
  text: string;
  clientMessageId?: string;
}

/** Detail of `agent-chat:error`: a server `error` message or a problem of the element itself. */
export type AgentChatErrorDetail = ChatProblem;

/** Detail of `agent-chat:connection`. */
export type AgentChatConnectionDetail = ConnectionChange;

/** Memory bounds of one element: the conversation rows, one message's length, and the unprocessed-frame backlog. */
export interface AgentChatLimits extends ThreadModelLimits {
  /** Server messages received but not yet processed; beyond this the element reconnects and resumes. Default 50,000. */
  maxQueuedFrames: number;
}

/** A tool call's arguments as indented JSON (the raw text when it is not JSON). */
function readable(args = ''): string {
  try {
    return JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    return args;
  }
}

/** Completed messages are announced to screen readers up to this many characters. */
const MAX_ANNOUNCEMENT = 1_000;
/** The composer shows its character counter from this share of the message limit on. */
const COUNTER_FROM = 0.9;
const fmt = (n: number): string => n.toLocaleString();
/** How long a Copy button says "Copied". */
const COPIED_MS = 1_500;

function timeOf(ts: number): TemplateResult {
  const d = new Date(ts);
  const today = d.toDateString() === new Date().toDateString();
  return html`<time datetime=${d.toISOString()} title=${d.toLocaleString()}
    >${today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}</time
  >`;
}
/*
 * Screen readers should hear new answers, not the replayed history. The protocol has no "replay done" marker,
 * so an event counts as live when it belongs to a run this element started, or when it arrived more than
 * REPLAY_WINDOW_MS after the connection opened and is not older (server clock) than that connection minus
 * HISTORY_SLACK_MS. Both clocks are used so that neither skew nor a slow replay alone announces history.
 */
const HISTORY_SLACK_MS = 2_000;
const REPLAY_WINDOW_MS = 1_000;

function newId(): string {
  // randomUUID needs a secure context; plain-http intranet pages fall back to getRandomValues.
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join(
    '',
  );
}

const STATUS_TEXT: Record<ConnectionState, string> = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Connection lost. Reconnecting…',
  disconnected: 'Disconnected',
};

/**
 * `<agent-chat>`: a chat with one Threadline thread. Connects over WebSocket (or a supplied
 * {@link ChatTransport}), replays the thread's history, streams runs live, and reconnects by itself.
 *
 * @example
 * <script type="module" src="https://cdn.example/agent-chat.js"></script>
 * <agent-chat endpoint="wss://api.example.com/ws" thread-id="t-123"></agent-chat>
 *
 * @fires agent-chat:event - Every contract event, in seq order, once. Detail: {@link AgentChatEventDetail}.
 * @fires agent-chat:run-finished - A run ended (RUN_FINISHED or RUN_ERROR). Detail: {@link AgentChatRunFinishedDetail}.
 * @fires agent-chat:error - A server error or an element problem; `fatal` ones stop retrying (auth). Detail: {@link AgentChatErrorDetail}.
 * @fires agent-chat:connection - The connection state changed. Detail: {@link AgentChatConnectionDetail}.
 * @fires agent-chat:regenerate - Retry on a failed or stopped run, or Regenerate on the last answer; cancelable. Detail: {@link AgentChatRegenerateDetail}.
 *
 * @csspart status - The connection bar (`data-state` holds the state).
 * @csspart reconnect-button - Shown when retrying stopped.
 * @csspart messages - The scrolling conversation.
 * @csspart placeholder - Text shown while the thread is empty.
 * @csspart message - Every message bubble (also `user-message` / `assistant-message`).
 * @csspart user-message - A message the user wrote (`data-status`: sending, sent, failed).
 * @csspart assistant-message - An assistant message rendered from Markdown.
 * @csspart send-error - Why a message was not sent, with its Retry button; or why a regenerate was refused (under the answer).
 * @csspart message-actions - The row under a message: its time (shown on hover or focus) and Copy.
 * @csspart copy-button - Copies a message's text (Markdown source for answers) to the clipboard.
 * @csspart code-copy-button - Copies one code block.
 * @csspart jump-button - Scrolls to the latest message; shown when scrolled up.
 * @csspart working - Shown from a send until the first event of its answer.
 * @csspart tool-call - A tool call (`data-status`: running, done, failed; `data-approval`: pending, approved, rejected).
 * @csspart approval-args - The arguments of a call that waits for the user's approval.
 * @csspart approve-button - Approves a call that waits (the run goes on and the tool runs).
 * @csspart reject-button - Rejects a call that waits (the tool does not run; the agent is told).
 * @csspart run-error - A failed or stopped run, with its Retry button.
 * @csspart retry-button - The Retry buttons.
 * @csspart regenerate-button - Regenerate, among the last answer's actions: a new answer replaces it.
 * @csspart composer - The send box form.
 * @csspart input - The message textarea; it grows with its text up to a bound, then scrolls.
 * @csspart counter - Characters used of the limit, shown near the limit (`data-over` when over it).
 * @csspart composer-note - Why the message cannot be sent (too long).
 * @csspart send-button - The Send button.
 * @csspart stop-button - The Stop button, shown while a run is active.
 *
 * @cssprop --agent-chat-bg - Background.
 * @cssprop --agent-chat-fg - Text colour.
 * @cssprop --agent-chat-muted - Secondary text.
 * @cssprop --agent-chat-border - Borders.
 * @cssprop --agent-chat-accent - Buttons and links.
 * @cssprop --agent-chat-accent-fg - Text on accent.
 * @cssprop --agent-chat-user-bg - User bubble background.
 * @cssprop --agent-chat-user-fg - User bubble text.
 * @cssprop --agent-chat-assistant-bg - Assistant bubble background.
 * @cssprop --agent-chat-code-bg - Code background.
 * @cssprop --agent-chat-code-font - Code font family.
 * @cssprop --agent-chat-error - Errors.
 * @cssprop --agent-chat-success - Finished tool calls, connected dot.
 * @cssprop --agent-chat-focus-ring - Focus outline.
 * @cssprop --agent-chat-radius - Corner radius.
 * @cssprop --agent-chat-font - Font family.
 * @cssprop --agent-chat-font-size - Base font size.
 * @cssprop --agent-chat-gap - Spacing (density).
 * @cssprop --agent-chat-height - Height of the element.
 */
export class AgentChat extends LitElement {
  static override styles = styles;

  // Static properties rather than decorators: they build the same under tsup, esbuild and tsc with no
  // decorator configuration.
  static override properties = {
    endpoint: { type: String },
    threadId: { type: String, attribute: 'thread-id' },
    placeholder: { type: String },
    readonly: { type: Boolean, reflect: true },
    allowSendWhileRunning: { type: Boolean, attribute: 'allow-send-while-running' },
    transport: { attribute: false },
    reconnectOptions: { attribute: false },
    limits: { attribute: false },
  };

  /** WebSocket URL of the relay (`wss://…`). Ignored when {@link AgentChat.transport} is set. */
  declare endpoint: string;
  /** The thread to show (attribute `thread-id`). Changing it clears the view and subscribes anew. */
  declare threadId: string;
  /** Text shown while the thread has no messages. */
  declare placeholder: string;
  /** View only: no send box, no Stop, no Retry. */
  declare readonly: boolean;
  /** Keep Send enabled during a run, for hosts that queue messages (attribute `allow-send-while-running`). */
  declare allowSendWhileRunning: boolean;
  /** A custom transport (SSE, tests…); takes precedence over `endpoint`. */
  declare transport: ChatTransport | undefined;
  /** Reconnect backoff and its bound; see `DEFAULT_RECONNECT`. */
  declare reconnectOptions: Partial<ReconnectOptions> | undefined;
  /** Memory bounds; see `DEFAULT_MODEL_LIMITS`. Row and length bounds apply from the next thread on. */
  declare limits: Partial<AgentChatLimits> | undefined;

  private model = new ThreadModel();
  private modelThread = '';
  private conn: ChatConnection | undefined;
  private savedSeq = 0;
  private connChange: ConnectionChange = { state: 'idle', attempt: 0 };
  private stopReason = '';
  private historyBefore = 0;
  private connectedAt = 0;
  private readonly myRuns = new Set<string>();
  private announcement = '';
  private frame = 0;
  private stick = true;
  private readonly rendered = new Map<string, { el: HTMLDivElement; version: number }>();

  constructor() {
    super();
    this.endpoint = '';
    this.threadId = '';
    this.placeholder = 'No messages yet. Ask something to get started.';
    this.readonly = false;
    this.allowSendWhileRunning = false;
    this.transport = undefined;
    this.reconnectOptions = undefined;
    this.limits = undefined;
  }

  /** The connection state now. */
  get connectionState(): ConnectionState {
    return this.connChange.state;
  }

  /** The run in progress, if any. */
  get activeRunId(): string | undefined {
    return this.model.activeRunId;
  }

  /** The conversation as the element holds it (read-only view; do not mutate). */
  get messages(): readonly ChatItem[] {
    return this.model.items;
  }

  /**
   * Sends a user message to the thread and returns its `clientMessageId`.
   * Throws {@link AgentChatError}: `readonly`, `invalid_message` (empty or too long), `run_active`, `not_connected`.
   */
  send(text: string): string {
    if (this.readonly) throw new AgentChatError('readonly', 'this chat is read-only');
    if (typeof text !== 'string' || !text.trim())
      throw new AgentChatError('invalid_message', 'the message is empty');
    if (text.length > LIMITS.maxMessageLength) {
      throw new AgentChatError(
        'invalid_message',
        `the message is longer than ${LIMITS.maxMessageLength} characters (UTF-16 code units)`,
      );
    }
    if (this.model.activeRunId && !this.allowSendWhileRunning) {
      throw new AgentChatError('run_active', 'a run is still active; wait for it or stop it first');
    }
    if (!this.conn || this.conn.state !== 'connected') {
      throw new AgentChatError('not_connected', 'not connected to the server; wait for it to reconnect');
    }
    const clientMessageId = newId();
    this.conn.send({ type: 'send', threadId: this.threadId, text, clientMessageId });
    this.model.addPending(clientMessageId, text);
    this.announce('Sent. Working on it…');
    this.stick = true;
    this.schedule();
    return clientMessageId;
  }

  /**
   * Asks for a new answer to the thread's last message, replacing the last answer (no second user bubble), and
   * returns the request's `clientMessageId`. Throws {@link AgentChatError} `readonly`, `run_active`, `not_connected`.
   */
  regenerate(): string {
    if (this.readonly) throw new AgentChatError('readonly', 'this chat is read-only');
    if (this.model.activeRunId)
      throw new AgentChatError('run_active', 'a run is still active; wait for it or stop it first');
    if (!this.conn) throw new AgentChatError('not_connected', 'not connected to the server');
    const clientMessageId = (this.regenId = newId());
    this.conn.send({ type: 'regenerate', threadId: this.threadId, clientMessageId });
    this.announce('Working on it…');
    return clientMessageId;
  }

  /** Asks the server to cancel the active run. Throws {@link AgentChatError} `no_active_run` or `not_connected`. */
  cancel(): void {
    const runId = this.model.activeRunId;
    if (!runId) throw new AgentChatError('no_active_run', 'there is no active run to stop');
    if (!this.conn) throw new AgentChatError('not_connected', 'not connected to the server');
    this.conn.send({ type: 'cancel', runId });
  }

  /** Sends the user's decision on a tool call that waits for approval; the log then shows it on every tab. */
  private decide(item: ToolItem, approved: boolean): void {
    this.conn?.send({
      type: 'approve',
      threadId: this.threadId,
      runId: item.runId,
      toolCallId: item.toolCallId,
      approved,
    });
  }

  /** Reconnects now, resetting the retry count (e.g. after the user signed in again). */
  reconnect(): void {
    this.restart();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    if (this.hasUpdated) this.restart();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.resize.disconnect();
    this.shutdown();
    this.setConnection({ state: 'idle', attempt: 0 });
  }

  protected override updated(changed: PropertyValues<this>): void {
    if (
      changed.has('endpoint') ||
      changed.has('threadId') ||
      changed.has('transport') ||
      changed.has('reconnectOptions') ||
      changed.has('limits') ||
      !this.hasConnectedOnce
    ) {
      this.hasConnectedOnce = true;
      this.restart();
    }
    if (this.stick) {
      const list = this.renderRoot.querySelector('.messages');
      if (list) list.scrollTop = list.scrollHeight;
    }
    const list = this.renderRoot.querySelector('.messages');
    if (list) this.resize.observe(list);
    const input = this.renderRoot.querySelector('textarea');
    if (this.focusPending && input) {
      // Focus on open, unless the user is already typing somewhere else on the page.
      this.focusPending = false;
      const active = document.activeElement;
      if (!active || active === document.body || active === this) input.focus({ preventScroll: true });
    }
  }

  private hasConnectedOnce = false;
  private hasDraft = false;
  private draftLength = 0;
  private refused = false;
  /** The last regenerate request, and why the server refused it (shown until the next run starts). */
  private regenId = '';
  private regenError = '';
  private focusPending = true;
  // Keeps the latest message in view when the conversation's box changes size (phone keyboard, growing composer).
  private readonly resize = new ResizeObserver(() => {
    const list = this.renderRoot.querySelector('.messages');
    if (list && this.stick) list.scrollTop = list.scrollHeight;
  });
  private copied = '';
  private copiedTimer = 0;

  private shutdown(): void {
    if (this.conn) this.savedSeq = this.conn.lastSeq;
    this.conn?.stop();
    this.conn = undefined;
    cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  private restart(): void {
    this.shutdown();
    if (this.threadId !== this.modelThread) {
      this.model = new ThreadModel(this.limits ?? {});
      this.modelThread = this.threadId;
      this.savedSeq = 0;
      this.historyBefore = 0;
      this.myRuns.clear();
      this.rendered.clear();
      this.announcement = this.regenError = '';
      this.focusPending = true;
      this.requestUpdate();
    }
    const transport = this.transport ?? (this.endpoint ? new WebSocketTransport(this.endpoint) : undefined);
    if (!transport || !this.threadId || !this.isConnected) {
      this.setConnection({ state: 'idle', attempt: 0 });
      return;
    }
    this.stopReason = '';
    const conn = new ChatConnection(
      transport,
      this.threadId,
      resolveReconnect(this.reconnectOptions),
      {
        event: (e) => this.onEvent(e),
        ack: (m) => {
          this.model.acknowledge(m.clientMessageId, m.runId);
          this.myRuns.add(m.runId);
          this.schedule();
        },
        serverError: (m, fatal) => {
          console.warn(`agent-chat: server error ${m.code}: ${m.message}`);
          const text = problemText(m.code);
          // A refused send shows under its message; a refused regenerate under the last answer.
          if (m.ref && (this.model.fail(m.ref, text) || (m.ref === this.regenId && (this.regenError = text))))
            this.schedule();
          if (fatal) this.stopReason = text;
          this.emit('agent-chat:error', {
            code: m.code,
            message: m.message,
            ...(m.ref ? { ref: m.ref } : {}),
            ...(m.retryAfterMs === undefined ? {} : { retryAfterMs: m.retryAfterMs }),
            fatal,
          });
        },
        problem: (p) => {
          console.warn(`agent-chat: ${p.code}: ${p.message}`);
          if (p.fatal) this.stopReason = problemText(p.code);
          this.emit('agent-chat:error', p);
        },
        state: (c) => {
          if (c.state === 'connected') {
            this.connectedAt = performance.now();
            this.historyBefore = Date.now() - HISTORY_SLACK_MS;
          }
          if (c.state === 'reconnecting' || c.state === 'disconnected') {
            // The server may or may not have stored these; Retry re-sends with the same clientMessageId, which the
            // relay treats idempotently.
            for (const item of this.model.unacknowledged())
              this.model.fail(item.clientMessageId as string, problemText('connection_lost'));
          }
          this.setConnection(c);
        },
      },
      this.limits?.maxQueuedFrames,
    );
    conn.lastSeq = this.savedSeq;
    this.conn = conn;
    conn.start();
  }

  private setConnection(change: ConnectionChange): void {
    const same = change.state === this.connChange.state && change.attempt === this.connChange.attempt;
    this.connChange = change;
    this.setAttribute('connection', change.state);
    this.requestUpdate();
    if (!same) this.emit('agent-chat:connection', change);
  }

  private onEvent(event: SequencedAgentEvent): void {
    if (event.type === 'RUN_STARTED') this.regenError = '';
    const { completed } = this.model.apply(event);
    const live =
      this.myRuns.has(event.runId) ||
      (event.ts >= this.historyBefore && performance.now() - this.connectedAt > REPLAY_WINDOW_MS);
    if (live) {
      const last = completed[completed.length - 1];
      if (last) this.announce(`Assistant: ${last.text}`);
      if (event.type === 'RUN_ERROR') this.announce(runErrorText(event.code));
      if (event.type === 'TOOL_APPROVAL_REQUESTED')
        this.announce(`${event.label ?? humanise(event.toolName)} needs your approval.`);
      if (event.type === 'TOOL_APPROVAL_RESOLVED') this.announce(event.approved ? 'Approved.' : 'Rejected.');
    }
    // Technical detail for developers, history included; the chat shows sentences.
    if (event.type === 'RUN_ERROR')
      console.warn(`agent-chat: run ${event.runId} failed (${event.code ?? 'no code'}): ${event.message}`);
    if (event.type === 'TOOL_CALL_RESULT' && !event.ok)
      console.warn(`agent-chat: tool ${event.toolName} failed: ${event.error ?? ''}`);
    this.emit('agent-chat:event', { event });
    if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
      this.emit('agent-chat:run-finished', { runId: event.runId, ok: event.type === 'RUN_FINISHED', event });
    }
    this.schedule();
  }

  private announce(text: string): void {
    this.announcement = text.length > MAX_ANNOUNCEMENT ? `${text.slice(0, MAX_ANNOUNCEMENT)}…` : text;
  }

  /** Coalesces any number of events into one render per animation frame. */
  private schedule(): void {
    if (this.frame) return;
    const list = this.renderRoot?.querySelector('.messages');
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (list) this.stick ||= list.scrollHeight - list.scrollTop - list.clientHeight < 48;
      this.requestUpdate();
    });
  }

  private emit(type: string, detail: unknown): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  private onScroll = (e: Event): void => {
    const list = e.currentTarget as HTMLElement;
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
    if (stick !== this.stick) {
      this.stick = stick;
      this.requestUpdate(); // shows or hides the jump button
    }
  };

  private jump = (): void => {
    const list = this.renderRoot.querySelector<HTMLElement>('.messages');
    if (!list) return;
    list.scrollTop = list.scrollHeight;
    this.stick = true;
    list.focus({ preventScroll: true }); // the button goes away; keep focus in the conversation
    this.requestUpdate();
  };

  /** Copies `text`; `key` names the button that says "Copied" for a moment (or a code button itself). */
  private async copy(text: string, key: string, button?: HTMLElement): Promise<void> {
    let ok = true;
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {
      ok = false;
      console.warn('agent-chat: copy failed', err);
    }
    this.announce(ok ? 'Copied to the clipboard.' : 'Could not copy. Select the text and copy it instead.');
    if (button) {
      button.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => (button.textContent = 'Copy'), COPIED_MS);
    } else {
      this.copied = ok ? key : `!${key}`;
      clearTimeout(this.copiedTimer);
      this.copiedTimer = window.setTimeout(() => {
        this.copied = '';
        this.requestUpdate();
      }, COPIED_MS);
    }
    this.requestUpdate();
  }

  private onListClick = (e: Event): void => {
    const button = (e.target as Element).closest?.('.code-copy');
    const code = button?.parentElement?.querySelector('pre');
    if (button && code) void this.copy(code.textContent ?? '', '', button as HTMLElement);
  };

  private actions(key: string, text: string, ts: number, what: string, regenerate?: string): TemplateResult {
    const state = this.copied === key ? 'Copied' : this.copied === `!${key}` ? 'Copy failed' : 'Copy';
    return html`<div part="message-actions" class="meta">
      <button
        type="button"
        class="link"
        part="copy-button"
        aria-label=${state === 'Copy' ? `Copy ${what}` : state}
        @click=${() => void this.copy(text, key)}
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
              ?disabled=${!this.canSend()}
              @click=${() => this.retryRun(regenerate)}
            >
              Regenerate
            </button>`
          : nothing
      }
      ${timeOf(ts)}
    </div>`;
  }

  private onInput = (e: Event): void => {
    const input = e.currentTarget as HTMLTextAreaElement;
    // Grow with the text; CSS max-height bounds it, then it scrolls.
    input.style.height = 'auto';
    input.style.height = `${input.scrollHeight + input.offsetHeight - input.clientHeight}px`;
    const has = input.value.trim() !== '';
    const length = input.value.length;
    const max = LIMITS.maxMessageLength;
    if (length > max && this.draftLength <= max) this.announce(this.tooLong(length));
    if (has !== this.hasDraft || length !== this.draftLength) {
      if (length <= max) this.refused = false;
      this.hasDraft = has;
      this.draftLength = length;
      this.requestUpdate();
    }
  };

  private tooLong(length: number): string {
    return `Too long by ${fmt(length - LIMITS.maxMessageLength)} characters. Shorten it to send.`;
  }

  private onKeydown = (e: KeyboardEvent): void => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.submit();
    }
  };

  private onSubmit = (e: Event): void => {
    e.preventDefault();
    this.submit();
  };

  private submit(): void {
    const input = this.renderRoot.querySelector('textarea');
    if (!input || !input.value.trim()) return;
    if (input.value.length > LIMITS.maxMessageLength) {
      // Never cut the text: refuse, say why, keep the draft.
      this.refused = true;
      this.announce(this.tooLong(input.value.length));
      this.requestUpdate();
      return;
    }
    if (!this.canSend()) return;
    try {
      this.send(input.value);
      input.value = '';
      input.style.height = '';
      this.hasDraft = false;
      this.draftLength = 0;
    } catch (err) {
      const e = err as AgentChatError;
      this.emit('agent-chat:error', { code: e.code, message: e.message, fatal: false });
    }
  }

  private canSend(): boolean {
    return (
      !this.readonly &&
      this.connChange.state === 'connected' &&
      (!this.model.activeRunId || this.allowSendWhileRunning)
    );
  }

  private resend(item: UserItem): void {
    if (!this.conn || !item.clientMessageId) return;
    try {
      this.conn.send({
        type: 'send',
        threadId: this.threadId,
        text: item.text,
        clientMessageId: item.clientMessageId,
      });
      item.status = 'sending';
      delete item.error;
    } catch (err) {
      const e = err as AgentChatError;
      this.emit('agent-chat:error', { code: e.code, message: e.message, fatal: false });
    }
    this.requestUpdate();
  }

  private retryRun(runId: string): void {
    const item = this.model.userMessageOf(runId);
    if (!item) return;
    const detail: AgentChatRegenerateDetail = { runId, text: item.text };
    if (item.clientMessageId) detail.clientMessageId = item.clientMessageId;
    const regenerate = new CustomEvent('agent-chat:regenerate', {
      detail,
      bubbles: true,
      composed: true,
      cancelable: true,
    });
    if (!this.dispatchEvent(regenerate)) return; // the page starts the new run itself
    try {
      this.regenerate();
    } catch (err) {
      const e = err as AgentChatError;
      this.emit('agent-chat:error', { code: e.code, message: e.message, fatal: false });
    }
  }

  private stop = (): void => {
    try {
      this.cancel();
    } catch (err) {
      const e = err as AgentChatError;
      this.emit('agent-chat:error', { code: e.code, message: e.message, fatal: false });
    }
  };

  private markdown(item: AssistantItem): HTMLDivElement {
    let entry = this.rendered.get(item.key);
    if (!entry) {
      entry = { el: document.createElement('div'), version: -1 };
      this.rendered.set(item.key, entry);
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

  protected override render(): TemplateResult {
    const state = this.connChange.state;
    const items = this.model.items;
    if (this.rendered.size > items.length + 64) {
      const keep = new Set(items.map((i) => i.key));
      for (const key of this.rendered.keys()) if (!keep.has(key)) this.rendered.delete(key);
    }
    const running = this.model.activeRunId !== undefined;
    // From a send until the first event of its answer: the last row is that message, still pending or running.
    const last = items[items.length - 1];
    const working =
      last?.kind === 'user' &&
      (last.status === 'sending' || (last.status === 'sent' && last.runId === this.model.activeRunId));
    const over = this.draftLength > LIMITS.maxMessageLength;
    let lastRun: string | undefined;
    for (const i of items) if ('runId' in i && i.runId) lastRun = i.runId;
    const status =
      state === 'disconnected' && this.stopReason
        ? `Disconnected: ${this.stopReason}`
        : state === 'reconnecting'
          ? `${STATUS_TEXT.reconnecting} (attempt ${this.connChange.attempt})`
          : STATUS_TEXT[state];
    return html`
      <div part="status" class="status" data-state=${state}>
        <span class="dot" aria-hidden="true"></span>
        <span>${status}</span>
        ${
          state === 'disconnected'
            ? html`<button
                type="button"
                class="link"
                part="reconnect-button"
                @click=${() => this.reconnect()}
              >
                Reconnect
              </button>`
            : nothing
        }
      </div>
      <div class="viewport">
        ${
          !this.stick && items.length
            ? html`<button
                type="button"
                part="jump-button"
                class="jump"
                aria-label="Scroll to the latest message"
                @click=${this.jump}
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
          @scroll=${this.onScroll}
          @click=${this.onListClick}
        >
          ${
            items.length === 0
              ? html`<p part="placeholder" class="placeholder">${this.placeholder}</p>`
              : items.map((i) =>
                  this.renderItem(
                    i,
                    !running && !this.readonly && (i.kind === 'run-error' ? i.runId === lastRun : i === last),
                  ),
                )
          }
          ${this.regenError ? html`<div part="send-error" class="run-error">${this.regenError}</div>` : nothing}
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
      <div class="sr-only" role="status" aria-live="polite" aria-atomic="true">${this.announcement}</div>
      ${
        this.readonly
          ? nothing
          : html`<form part="composer" class="composer" @submit=${this.onSubmit}>
              <textarea
                part="input"
                rows="1"
                aria-label="Message"
                aria-describedby="counter"
                aria-invalid=${over ? 'true' : 'false'}
                placeholder="Write a message…"
                @keydown=${this.onKeydown}
                @input=${this.onInput}
              ></textarea>
              <button
                part="send-button"
                type="submit"
                aria-label="Send message"
                ?disabled=${!this.canSend() || !this.hasDraft || over}
              >
                Send
              </button>
              ${
                running
                  ? html`<button
                      part="stop-button"
                      type="button"
                      class="secondary"
                      aria-label="Stop the response"
                      @click=${this.stop}
                    >
                      Stop
                    </button>`
                  : nothing
              }
              ${
                this.draftLength >= LIMITS.maxMessageLength * COUNTER_FROM
                  ? html`<div class="composer-foot">
                      <span part="composer-note" class="note"
                        >${over ? `${this.refused ? 'Not sent. ' : ''}${this.tooLong(this.draftLength)}` : ''}</span
                      >
                      <span part="counter" id="counter" class="counter" ?data-over=${over}
                        >${fmt(this.draftLength)} / ${fmt(LIMITS.maxMessageLength)}</span
                      >
                    </div>`
                  : nothing
              }
            </form>`
      }
    `;
  }

  private renderItem(item: ChatItem, retryable: boolean): TemplateResult {
    switch (item.kind) {
      case 'user': {
        // The bubble uses white-space: pre-wrap, so the template must not put whitespace around the text.
        // prettier-ignore
        const bubble = html`<div part="message user-message" class="msg user" data-status=${item.status}>${item.text}</div>`;
        return html`<div class="row mine">
            ${bubble}
            ${item.status === 'failed' ? nothing : this.actions(item.key, item.text, item.ts, 'message')}
          </div>
          ${
            item.status === 'failed'
              ? html`<div part="send-error" class="failed">
                  <span>Not sent. ${item.error ?? ''}</span>
                  ${
                    this.readonly
                      ? nothing
                      : html`<button
                          type="button"
                          class="link"
                          part="retry-button"
                          aria-label="Retry sending"
                          @click=${() => this.resend(item)}
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
            ${this.markdown(item)}
          </div>
          ${
            item.complete
              ? this.actions(item.key, item.text, item.ts, 'answer', retryable ? item.runId : '')
              : nothing
          }
        </div>`;
      case 'tool': {
        // The tool's own label ("Updating your profile"), else its name in words; the error text goes to the console.
        const label = item.label ?? humanise(item.toolName);
        // Waiting for the user: the call's arguments and the two buttons (the run goes on once one is pressed).
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
                  <button part="approve-button" @click=${() => this.decide(item, true)}>Approve</button>
                  <button part="reject-button" class="secondary" @click=${() => this.decide(item, false)}>
                    Reject
                  </button>`
              : nothing
          }
        </div>`;
      }
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
            retryable && this.model.userMessageOf(item.runId)
              ? html`<button
                  type="button"
                  class="link"
                  part="retry-button"
                  aria-label="Retry this message"
                  ?disabled=${!this.canSend()}
                  @click=${() => this.retryRun(item.runId)}
                >
                  Retry
                </button>`
              : nothing
          }
        </div>`;
    }
  }
}

if (!customElements.get('agent-chat')) customElements.define('agent-chat', AgentChat);

declare global {
  interface HTMLElementTagNameMap {
    'agent-chat': AgentChat;
  }
  interface HTMLElementEventMap {
    'agent-chat:event': CustomEvent<AgentChatEventDetail>;
    'agent-chat:run-finished': CustomEvent<AgentChatRunFinishedDetail>;
    'agent-chat:error': CustomEvent<AgentChatErrorDetail>;
    'agent-chat:connection': CustomEvent<AgentChatConnectionDetail>;
    'agent-chat:regenerate': CustomEvent<AgentChatRegenerateDetail>;
  }
}

import { LitElement, type PropertyValues, type TemplateResult } from 'lit';
import type { SequencedAgentEvent } from '@threadline/contracts';
import { LIMITS } from '@threadline/contracts/core';
import { announcementOf, clipAnnouncement, HISTORY_SLACK_MS, REPLAY_WINDOW_MS } from './announcer.js';
import { resolveReconnect, type ReconnectOptions } from './backoff.js';
import { ChatConnection, type ConnectionChange, type ConnectionState } from './connection.js';
import { AgentChatError } from './errors.js';
import type { AgentChatEventDetailOf, AgentChatEventName } from './events.js';
import { styles } from './styles.js';
import { ThreadModel, type ChatItem, type ThreadModelLimits } from './thread-model.js';
import { WebSocketTransport, type ChatTransport } from './transport.js';
import { renderChat } from './view.js';
import { problemText } from './words.js';

/** Memory bounds of one element: the conversation rows, one message's length, and the unprocessed-frame backlog. */
export interface AgentChatLimits extends ThreadModelLimits {
  /** Server messages received but not yet processed; beyond this the element reconnects and resumes. Default 50,000. */
  maxQueuedFrames: number;
}

function newId(): string {
  // randomUUID needs a secure context; plain-http intranet pages fall back to getRandomValues.
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join(
    '',
  );
}

/**
 * `<agent-chat>`: a chat with one Threadline thread. Connects over WebSocket (or a supplied
 * {@link ChatTransport}), replays the thread's history, streams runs live, and reconnects by itself.
 *
 * This module only declares the class; `@threadline/web-component` (and its `agent-chat.js` bundle) registers
 * it as `<agent-chat>`, while `@threadline/web-component/element` exports it without registering anything.
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
 * @csspart approval-error - Why the server refused the last Approve or Reject (e.g. too many answers in progress); the buttons stay.
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

  // Members the view modules (view.ts, messages.ts, approvals.ts, composer.ts) share with the class are named
  // `__x` and marked @internal: not API, left out of the published typings and shortened in the bundle.
  /** @internal The conversation of {@link AgentChat.threadId}. */
  __model = new ThreadModel();
  /** @internal */ __conn: ChatConnection | undefined;
  /** @internal */ __connChange: ConnectionChange = { state: 'idle', attempt: 0 };
  /** @internal Why retrying stopped (a fatal error), shown in the status bar. */
  __stopReason = '';
  /** @internal The text of the live region that screen readers read. */
  __announcement = '';
  /** @internal Whether the conversation follows its latest message (the user has not scrolled up). */
  __stick = true;
  /** @internal Rendered Markdown per assistant item, rebuilt when the item's version changes. */
  readonly __rendered = new Map<string, { el: HTMLDivElement; version: number }>();
  /** @internal Whether the composer holds non-blank text, and how long it is. */
  __hasDraft = false;
  /** @internal */ __draftLength = 0;
  /** @internal A send of an over-long draft was refused (the note says "Not sent."). */
  __refused = false;
  /** @internal Why the server refused the last regenerate (shown until the next run starts). */
  __regenError = '';
  /** @internal The run of the last approve or reject sent, and why the server refused it (shown under the call). */
  __decidedRun = '';
  /** @internal */ __approvalError = '';
  /** @internal Which Copy button says "Copied" (`!key`: "Copy failed"), and the timer that resets it. */
  __copied = '';
  /** @internal */ __copiedTimer = 0;
  #modelThread = '';
  #savedSeq = 0;
  #historyBefore = 0;
  #connectedAt = 0;
  readonly #myRuns = new Set<string>();
  #frame = 0;
  #hasConnectedOnce = false;
  /** The last regenerate request, whose refusal shows as {@link AgentChat.__regenError}. */
  #regenId = '';
  #focusPending = true;
  // Keeps the latest message in view when the conversation's box changes size (phone keyboard, growing composer).
  readonly #resize = new ResizeObserver(() => {
    const list = this.renderRoot.querySelector('.messages');
    if (list && this.__stick) list.scrollTop = list.scrollHeight;
  });

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
    return this.__connChange.state;
  }

  /** The run in progress, if any. */
  get activeRunId(): string | undefined {
    return this.__model.activeRunId;
  }

  /** The conversation as the element holds it (read-only view; do not mutate). */
  get messages(): readonly ChatItem[] {
    return this.__model.items;
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
    if (this.__model.activeRunId && !this.allowSendWhileRunning) {
      throw new AgentChatError('run_active', 'a run is still active; wait for it or stop it first');
    }
    if (!this.__conn || this.__conn.state !== 'connected') {
      throw new AgentChatError('not_connected', 'not connected to the server; wait for it to reconnect');
    }
    const clientMessageId = newId();
    this.__conn.send({ type: 'send', threadId: this.threadId, text, clientMessageId });
    this.__model.addPending(clientMessageId, text);
    this.__announce('Sent. Working on it…');
    this.__stick = true;
    this.__schedule();
    return clientMessageId;
  }

  /**
   * Asks for a new answer to the thread's last message, replacing the last answer (no second user bubble), and
   * returns the request's `clientMessageId`. Throws {@link AgentChatError} `readonly`, `run_active`, `not_connected`.
   */
  regenerate(): string {
    if (this.readonly) throw new AgentChatError('readonly', 'this chat is read-only');
    if (this.__model.activeRunId)
      throw new AgentChatError('run_active', 'a run is still active; wait for it or stop it first');
    if (!this.__conn) throw new AgentChatError('not_connected', 'not connected to the server');
    const clientMessageId = (this.#regenId = newId());
    this.__conn.send({ type: 'regenerate', threadId: this.threadId, clientMessageId });
    this.__announce('Working on it…');
    return clientMessageId;
  }

  /** Asks the server to cancel the active run. Throws {@link AgentChatError} `no_active_run` or `not_connected`. */
  cancel(): void {
    const runId = this.__model.activeRunId;
    if (!runId) throw new AgentChatError('no_active_run', 'there is no active run to stop');
    if (!this.__conn) throw new AgentChatError('not_connected', 'not connected to the server');
    this.__conn.send({ type: 'cancel', runId });
  }

  /** Reconnects now, resetting the retry count (e.g. after the user signed in again). */
  reconnect(): void {
    this.#restart();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    if (this.hasUpdated) this.#restart();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#resize.disconnect();
    this.#shutdown();
    this.#setConnection({ state: 'idle', attempt: 0 });
  }

  protected override updated(changed: PropertyValues<this>): void {
    if (
      changed.has('endpoint') ||
      changed.has('threadId') ||
      changed.has('transport') ||
      changed.has('reconnectOptions') ||
      changed.has('limits') ||
      !this.#hasConnectedOnce
    ) {
      this.#hasConnectedOnce = true;
      this.#restart();
    }
    if (this.__stick) {
      const list = this.renderRoot.querySelector('.messages');
      if (list) list.scrollTop = list.scrollHeight;
    }
    const list = this.renderRoot.querySelector('.messages');
    if (list) this.#resize.observe(list);
    const input = this.renderRoot.querySelector('textarea');
    if (this.#focusPending && input) {
      // Focus on open, unless the user is already typing somewhere else on the page.
      this.#focusPending = false;
      const active = document.activeElement;
      if (!active || active === document.body || active === this) input.focus({ preventScroll: true });
    }
  }

  protected override render(): TemplateResult {
    return renderChat(this);
  }

  /** @internal Whether Send (and Retry, Regenerate) can act now. */
  __canSend(): boolean {
    return (
      !this.readonly &&
      this.__connChange.state === 'connected' &&
      (!this.__model.activeRunId || this.allowSendWhileRunning)
    );
  }

  /** @internal Sets what the live region says next (clipped for long answers). */
  __announce(text: string): void {
    this.__announcement = clipAnnouncement(text);
  }

  /** @internal Coalesces any number of events into one render per animation frame. */
  __schedule(): void {
    if (this.#frame) return;
    const list = this.renderRoot?.querySelector('.messages');
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      if (list) this.__stick ||= list.scrollHeight - list.scrollTop - list.clientHeight < 48;
      this.requestUpdate();
    });
  }

  /** @internal Dispatches one of the element's events (bubbling, composed); false when a listener cancelled it. */
  __emit<K extends AgentChatEventName>(
    type: K,
    detail: AgentChatEventDetailOf<K>,
    cancelable = false,
  ): boolean {
    return this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true, cancelable }));
  }

  /**
   * @internal Runs what a button or key asked for. Nobody is there to catch an {@link AgentChatError} it throws
   * (not connected, a run still active, …), so it becomes a non-fatal `agent-chat:error` event.
   */
  __attempt(action: () => void): void {
    try {
      action();
    } catch (err) {
      const e = err as AgentChatError;
      this.__emit('agent-chat:error', { code: e.code, message: e.message, fatal: false });
    }
  }

  #shutdown(): void {
    if (this.__conn) this.#savedSeq = this.__conn.lastSeq;
    this.__conn?.stop();
    this.__conn = undefined;
    cancelAnimationFrame(this.#frame);
    this.#frame = 0;
  }

  #restart(): void {
    this.#shutdown();
    if (this.threadId !== this.#modelThread) {
      this.__model = new ThreadModel(this.limits ?? {});
      this.#modelThread = this.threadId;
      this.#savedSeq = 0;
      this.#historyBefore = 0;
      this.#myRuns.clear();
      this.__rendered.clear();
      this.__announcement = this.__regenError = '';
      this.#focusPending = true;
      this.requestUpdate();
    }
    const transport = this.transport ?? (this.endpoint ? new WebSocketTransport(this.endpoint) : undefined);
    if (!transport || !this.threadId || !this.isConnected) {
      this.#setConnection({ state: 'idle', attempt: 0 });
      return;
    }
    this.__stopReason = '';
    const conn = new ChatConnection(
      transport,
      this.threadId,
      resolveReconnect(this.reconnectOptions),
      {
        event: (e) => this.#onEvent(e),
        ack: (m) => {
          this.__model.acknowledge(m.clientMessageId, m.runId);
          this.#myRuns.add(m.runId);
          this.__schedule();
        },
        serverError: (m, fatal) => {
          console.warn(`agent-chat: server error ${m.code}: ${m.message}`);
          const text = problemText(m.code);
          // A refused send shows under its message, a refused regenerate under the last answer, a refused
          // decision under its tool call (and is said: the buttons stay, nothing else changes).
          if (m.ref && m.ref === this.__decidedRun && !this.__approvalError) {
            this.__approvalError = text;
            this.__announce(text);
            this.__schedule();
          } else if (
            m.ref &&
            (this.__model.fail(m.ref, text) || (m.ref === this.#regenId && (this.__regenError = text)))
          )
            this.__schedule();
          if (fatal) this.__stopReason = text;
          this.__emit('agent-chat:error', {
            code: m.code,
            message: m.message,
            ...(m.ref ? { ref: m.ref } : {}),
            ...(m.retryAfterMs === undefined ? {} : { retryAfterMs: m.retryAfterMs }),
            fatal,
          });
        },
        problem: (p) => {
          console.warn(`agent-chat: ${p.code}: ${p.message}`);
          if (p.fatal) this.__stopReason = problemText(p.code);
          this.__emit('agent-chat:error', p);
        },
        state: (c) => {
          if (c.state === 'connected') {
            this.#connectedAt = performance.now();
            this.#historyBefore = Date.now() - HISTORY_SLACK_MS;
          }
          if (c.state === 'reconnecting' || c.state === 'disconnected') {
            // The server may or may not have stored these; Retry re-sends with the same clientMessageId, which the
            // relay treats idempotently.
            for (const item of this.__model.unacknowledged())
              this.__model.fail(item.clientMessageId as string, problemText('connection_lost'));
          }
          this.#setConnection(c);
        },
      },
      this.limits?.maxQueuedFrames,
    );
    conn.lastSeq = this.#savedSeq;
    this.__conn = conn;
    conn.start();
  }

  #setConnection(change: ConnectionChange): void {
    const same = change.state === this.__connChange.state && change.attempt === this.__connChange.attempt;
    this.__connChange = change;
    this.setAttribute('connection', change.state);
    this.requestUpdate();
    if (!same) this.__emit('agent-chat:connection', change);
  }

  #onEvent(event: SequencedAgentEvent): void {
    if (event.type === 'RUN_STARTED') this.__regenError = '';
    const { completed } = this.__model.apply(event);
    const live =
      this.#myRuns.has(event.runId) ||
      (event.ts >= this.#historyBefore && performance.now() - this.#connectedAt > REPLAY_WINDOW_MS);
    const text = live ? announcementOf(event, completed) : undefined;
    if (text) this.__announce(text);
    // Technical detail for developers, history included; the chat shows sentences.
    if (event.type === 'RUN_ERROR')
      console.warn(`agent-chat: run ${event.runId} failed (${event.code ?? 'no code'}): ${event.message}`);
    if (event.type === 'TOOL_CALL_RESULT' && !event.ok)
      console.warn(`agent-chat: tool ${event.toolName} failed: ${event.error ?? ''}`);
    this.__emit('agent-chat:event', { event });
    if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
      this.__emit('agent-chat:run-finished', {
        runId: event.runId,
        ok: event.type === 'RUN_FINISHED',
        event,
      });
    }
    this.__schedule();
  }
}

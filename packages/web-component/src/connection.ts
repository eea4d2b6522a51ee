import type {
  AckMessage,
  BrowserErrorCode,
  ClientMessage,
  ErrorMessage,
  SequencedAgentEvent,
} from '@threadline/contracts';
import { backoffDelay, type ReconnectOptions } from './backoff.js';
import { AgentChatError, type AgentChatErrorCode } from './errors.js';
import { readServerFrame } from './guard.js';
import type { ChatTransport, TransportCloseInfo, TransportConnection } from './transport.js';

/** The element's connection state, shown in its status bar and reported by `agent-chat:connection`. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

/** Detail of a connection state change. */
export interface ConnectionChange {
  state: ConnectionState;
  /** Consecutive failed attempts so far. */
  attempt: number;
  /** While `reconnecting`: how long until the next attempt. */
  delayMs?: number;
  /** While `disconnected`: the code that stopped retrying. */
  code?: string;
}

/** A problem reported to the page; `fatal` ones stop the element from retrying. */
export interface ChatProblem {
  code: string;
  message: string;
  ref?: string;
  /** From the server's refusal (e.g. `rate_limited`): how long to wait before sending again. */
  retryAfterMs?: number;
  fatal: boolean;
}

/** Callbacks of a {@link ChatConnection}. */
export interface ConnectionHooks {
  event(event: SequencedAgentEvent): void;
  ack(message: AckMessage): void;
  serverError(message: ErrorMessage, fatal: boolean): void;
  problem(problem: ChatProblem): void;
  state(change: ConnectionChange): void;
}

/** Server error codes after which retrying cannot help until the page acts (sign in again, etc.). */
const FATAL_SERVER_CODES = new Set<string>([
  'unauthorized',
  'forbidden',
  'thread_deleted',
] satisfies BrowserErrorCode[]);
/** Close codes a server uses to say the same at the socket level (4401/4403 by Threadline's convention). */
const FATAL_CLOSE_CODES: Record<number, string> = {
  4401: 'unauthorized',
  4403: 'forbidden',
  1008: 'forbidden',
};

/** Default bound of the frame backlog. */
export const DEFAULT_MAX_QUEUED_FRAMES = 50_000;
/** Longest stretch of frame processing before yielding to the page, in ms. */
const SLICE_MS = 8;

/**
 * Keeps one thread subscribed through drops: subscribes with `afterSeq` = the last seq it delivered, drops
 * anything at or below it (so a replay never duplicates), reconnects with bounded backoff and jitter, and
 * stops for good on auth errors.
 */
export class ChatConnection {
  /** Highest seq delivered so far; the resume point. */
  lastSeq = 0;
  private current: TransportConnection | undefined;
  private token: object | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private stateNow: ConnectionState = 'idle';
  private backlog: string[] = [];
  private head = 0;
  private draining: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly transport: ChatTransport,
    private readonly threadId: string,
    private readonly options: ReconnectOptions,
    private readonly hooks: ConnectionHooks,
    /** Frames received but not yet processed; beyond this the connection is dropped and resumed from lastSeq. */
    private readonly maxQueuedFrames = DEFAULT_MAX_QUEUED_FRAMES,
  ) {}

  get state(): ConnectionState {
    return this.stateNow;
  }

  /** Opens the connection now, forgetting earlier failures. */
  start(): void {
    this.attempt = 0;
    this.open();
  }

  /** Closes the connection and cancels any pending retry. Reports no state change. */
  stop(): void {
    clearTimeout(this.timer);
    clearTimeout(this.draining);
    this.timer = this.draining = undefined;
    this.backlog = [];
    this.head = 0;
    this.token = undefined;
    const c = this.current;
    this.current = undefined;
    c?.close();
    this.stateNow = 'idle';
  }

  /** Sends a client message; throws {@link AgentChatError} `not_connected` when the connection is not open. */
  send(message: ClientMessage): void {
    if (this.stateNow !== 'connected' || !this.current) {
      throw new AgentChatError('not_connected', 'not connected to the server; wait for it to reconnect');
    }
    this.current.send(message);
  }

  private setState(change: Omit<ConnectionChange, 'attempt'>): void {
    this.stateNow = change.state;
    this.hooks.state({ ...change, attempt: this.attempt });
  }

  private open(): void {
    this.stop();
    const token = {};
    this.token = token;
    this.setState({ state: 'connecting' });
    const live = (): boolean => this.token === token;
    try {
      this.current = this.transport.connect({
        open: () => {
          if (!live() || !this.current) return;
          this.current.send({ type: 'subscribe', threadId: this.threadId, afterSeq: this.lastSeq });
          this.setState({ state: 'connected' });
        },
        message: (text) => {
          if (live()) this.enqueue(text);
        },
        close: (info) => {
          if (!live()) return;
          this.drain(Infinity); // what arrived before the close still counts
          if (!live()) return;
          this.current = undefined;
          this.dropped(info);
        },
      });
    } catch (cause) {
      this.fail(
        'transport_error',
        cause instanceof Error ? cause.message : 'the transport failed to connect',
      );
    }
  }

  /*
   * A browser may deliver thousands of buffered WebSocket messages in one task. Handlers only queue the text;
   * processing runs in slices of SLICE_MS so a 10,000-chunk burst never blocks the page for long.
   */
  private enqueue(text: string): void {
    if (this.backlog.length - this.head >= this.maxQueuedFrames) {
      this.hooks.problem({
        code: 'frame_backlog',
        message: `more than ${this.maxQueuedFrames} server messages waiting; reconnecting to catch up`,
        fatal: false,
      });
      this.abandon('frame_backlog');
      return;
    }
    this.backlog.push(text);
    this.draining ??= setTimeout(() => this.drain(SLICE_MS), 0);
  }

  private drain(budgetMs: number): void {
    clearTimeout(this.draining);
    this.draining = undefined;
    const token = this.token;
    const end = performance.now() + budgetMs;
    while (this.head < this.backlog.length && this.token === token) {
      this.frame(this.backlog[this.head++] as string);
      if (performance.now() >= end) break;
    }
    if (this.token !== token) return;
    if (this.head < this.backlog.length) this.draining = setTimeout(() => this.drain(SLICE_MS), 0);
    else {
      this.backlog = [];
      this.head = 0;
    }
  }

  private frame(text: string): void {
    const f = readServerFrame(text);
    switch (f.kind) {
      case 'invalid':
        this.hooks.problem({
          code: 'invalid_frame',
          message: `ignored a server message: ${f.reason}`,
          fatal: false,
        });
        return;
      case 'unknown_event':
      case 'event': {
        const { seq, threadId } = f.kind === 'event' ? f.event : f;
        if (threadId !== this.threadId) {
          this.hooks.problem({
            code: 'invalid_frame',
            message: 'ignored an event of another thread',
            fatal: false,
          });
          return;
        }
        if (seq <= this.lastSeq) return; // already delivered before a reconnect
        this.lastSeq = seq;
        this.attempt = 0; // the connection works: later drops start the backoff afresh
        if (f.kind === 'event') this.hooks.event(f.event);
        return;
      }
      case 'ack':
        this.attempt = 0;
        this.hooks.ack(f.message);
        return;
      case 'error': {
        const m = f.message;
        const fatal =
          FATAL_SERVER_CODES.has(m.code) ||
          (m.code === 'not_found' && (m.ref === undefined || m.ref === this.threadId));
        this.hooks.serverError(m, fatal);
        if (fatal) this.fail(m.code, m.message, false);
        else if (m.code === 'slow_consumer') {
          // The server stops feeding a socket that fell behind; reconnecting resumes from lastSeq.
          this.abandon('slow_consumer');
        }
        return;
      }
    }
  }

  /** Closes this connection on our side, forgets its unprocessed frames, and reconnects with backoff. */
  private abandon(reason: string): void {
    const attempt = this.attempt;
    this.stop();
    this.attempt = attempt;
    this.dropped({ reason });
  }

  private dropped(info: TransportCloseInfo): void {
    const fatalCode = info.code === undefined ? undefined : FATAL_CLOSE_CODES[info.code];
    if (fatalCode) {
      this.fail(fatalCode, info.reason || `the server closed the connection (${fatalCode})`);
      return;
    }
    this.attempt++;
    if (this.attempt > this.options.maxAttempts) {
      this.fail('reconnect_exhausted', `could not reconnect after ${this.options.maxAttempts} attempts`);
      return;
    }
    const delayMs = backoffDelay(this.attempt, this.options);
    const token = {};
    this.token = token;
    this.timer = setTimeout(() => {
      if (this.token === token) this.open();
    }, delayMs);
    this.setState({ state: 'reconnecting', delayMs });
  }

  private fail(code: AgentChatErrorCode | string, message: string, report = true): void {
    const attempt = this.attempt;
    this.stop();
    this.attempt = attempt;
    if (report) this.hooks.problem({ code, message, fatal: true });
    this.setState({ state: 'disconnected', code });
  }
}

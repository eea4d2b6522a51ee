import { ClientMessageSchema, LIMITS, safeParseJson } from '@threadline/contracts';
import type { BrowserErrorCode, ClientMessage, ErrorMessage } from '@threadline/contracts';
import type { RawData, WebSocket } from 'ws';
import { RelayError } from '../errors.js';
import type { Relay } from '../core/relay.js';
import type { StoredEvent } from '../stores/store.js';
import type { Subscription } from '../core/subscription.js';
import type { WebSocketSettings } from './ws-options.js';

// One upgraded browser socket speaking the protocol: frames in (size, rate, bad-frame and in-flight bounds,
// schema), relay calls, and subscribed threads streamed out with backpressure. The upgrade gate
// (ws-upgrade.ts) creates a Connection once the peer is admitted.

/** Close codes the transport uses. */
export const WS_CLOSE_CODES = {
  goingAway: 1001,
  policyViolation: 1008,
  messageTooBig: 1009,
  /** Also the close code of a `too_many_connections` refusal: a slot frees up when another socket closes. */
  tryAgainLater: 1013,
  /** The peer is not (or no longer) signed in: do not reconnect without new credentials. */
  unauthorized: 4401,
} as const;

/**
 * How long a peer may take to answer the server's close (shutdown, or a refusal after the upgrade) before its
 * socket is destroyed: a peer that never answers must not hold a slot or shutdown up.
 */
export const CLOSE_GRACE_MS = 2_000;

/** The connection counter's key of a signed-in user's slots. */
export const userKey = (id: string): string => `user:${id}`;

const EVENT_PREFIX = '{"type":"event","event":';

/** What every connection of one transport shares. */
export interface ConnectionContext {
  relay: Relay;
  settings: WebSocketSettings;
  logger: Pick<Console, 'error' | 'warn'>;
  connections: Set<Connection>;
  /** Gives back a slot of the connection counter (the user's, when the connection closes). */
  release(key: string): void;
}

type Corkable = { cork(): void; uncork(): void };

const CONNECTION = Symbol('threadline.connection');
type Tagged = WebSocket & { [CONNECTION]?: Connection };

/** A shared no-op 'error' listener: a closure per socket would cost memory on every idle connection. */
export function ignore(): void {}

/** One browser socket: its user, its subscriptions, its rate-limit and bad-frame counters. */
export class Connection {
  readonly #ws: WebSocket;
  readonly #user: { id: string };
  readonly #ctx: ConnectionContext;
  /** At most `maxSubscriptionsPerConnection`: an array is a fraction of a Map's size per idle socket. */
  #subscriptions: Subscription[] | undefined;
  #tokens: number;
  #refilledAt: number;
  #badFrames = 0;
  #rateLimited = 0;
  #pending = 0;
  #alive = true;
  #closed = false;

  constructor(ws: WebSocket, user: { id: string }, ctx: ConnectionContext) {
    this.#ws = ws;
    this.#user = user;
    this.#ctx = ctx;
    this.#tokens = ctx.settings.messageBurst;
    this.#refilledAt = Date.now();
    ctx.connections.add(this);
    // Shared listeners that find their connection on the socket: no closures per idle socket.
    (ws as Tagged)[CONNECTION] = this;
    ws.on('message', Connection.#wsMessage);
    ws.on('pong', Connection.#wsPong);
    // 'close' follows an error; oversize frames arrive here as errors after ws already closed with 1009.
    ws.on('error', ignore);
    ws.on('close', Connection.#wsClose);
  }

  static #wsMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
    const connection = (this as Tagged)[CONNECTION];
    if (connection) connection.#onMessage(data, isBinary);
  }

  static #wsPong(this: WebSocket): void {
    const connection = (this as Tagged)[CONNECTION];
    if (connection) connection.#alive = true;
  }

  static #wsClose(this: WebSocket): void {
    const connection = (this as Tagged)[CONNECTION];
    if (connection) connection.#onClose();
  }

  /** Called every `heartbeatIntervalMs`: drops a peer that did not answer the previous ping, pings the rest. */
  heartbeat(): void {
    if (!this.#alive) {
      this.#ws.terminate();
      return;
    }
    this.#alive = false;
    try {
      this.#ws.ping();
    } catch {
      this.#ws.terminate();
    }
  }

  /** Closes with 1001 and resolves once the socket is closed (destroyed past {@link CLOSE_GRACE_MS}). */
  shutdown(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#closed || this.#ws.readyState === this.#ws.CLOSED) {
        this.#onClose();
        return resolve();
      }
      this.#ws.once('close', () => resolve());
      this.#ws.close(WS_CLOSE_CODES.goingAway, 'server shutting down');
      setTimeout(() => this.#ws.terminate(), CLOSE_GRACE_MS).unref();
    });
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ctx.connections.delete(this);
    this.#ctx.release(userKey(this.#user.id));
    const list = this.#subscriptions;
    this.#subscriptions = undefined;
    if (list) for (const s of list) s.close();
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#closed) return;
    this.#alive = true;
    const settings = this.#ctx.settings;
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    if (size > settings.maxFrameBytes) {
      this.#sendError('message_too_large', `frames may be at most ${settings.maxFrameBytes} bytes`);
      this.#ws.close(WS_CLOSE_CODES.messageTooBig, 'message too large');
      return;
    }
    // Token bucket: `messageBurst` at once, `messagesPerSecond` sustained.
    const now = Date.now();
    this.#tokens = Math.min(
      settings.messageBurst,
      this.#tokens + ((now - this.#refilledAt) / 1000) * settings.messagesPerSecond,
    );
    this.#refilledAt = now;
    if (this.#tokens < 1) {
      this.#rateLimited++;
      this.#sendError(
        'rate_limited',
        `more than ${settings.messagesPerSecond} messages per second; slow down`,
      );
      if (this.#rateLimited > settings.maxRateLimitedFrames)
        this.#ws.close(WS_CLOSE_CODES.policyViolation, 'rate limit exceeded');
      return;
    }
    this.#tokens -= 1;
    if (isBinary) return this.#badFrame('invalid_message', 'frames must be text (JSON)');
    const text = Buffer.isBuffer(data)
      ? data.toString('utf8')
      : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8');
    const parsed = safeParseJson(ClientMessageSchema, text, 'message');
    if (!parsed.ok) {
      return this.#badFrame(
        parsed.error.code === 'invalid_json' ? 'invalid_json' : 'invalid_message',
        parsed.error.message,
      );
    }
    const message = parsed.value;
    const ref = refOf(message);
    if (this.#pending >= settings.maxPendingRequests) {
      this.#sendError(
        'rate_limited',
        `at most ${settings.maxPendingRequests} requests may be in flight`,
        ref,
      );
      return;
    }
    this.#pending++;
    this.#handle(message).then(
      () => {
        this.#pending--;
      },
      (error: unknown) => {
        this.#pending--;
        this.#sendFailure(error, ref);
      },
    );
  }

  #badFrame(code: BrowserErrorCode, message: string): void {
    this.#badFrames++;
    this.#sendError(code, message);
    if (this.#badFrames >= this.#ctx.settings.maxBadFrames) {
      this.#ws.close(WS_CLOSE_CODES.policyViolation, 'too many invalid frames');
    }
  }

  async #handle(message: ClientMessage): Promise<void> {
    const relay = this.#ctx.relay;
    switch (message.type) {
      case 'send': {
        const { runId } = await relay.send({
          user: this.#user,
          threadId: message.threadId,
          text: message.text,
          clientMessageId: message.clientMessageId,
        });
        this.#sendRaw(JSON.stringify({ type: 'ack', clientMessageId: message.clientMessageId, runId }));
        return;
      }
      case 'regenerate': {
        const { runId } = await relay.regenerate({
          user: this.#user,
          threadId: message.threadId,
          clientMessageId: message.clientMessageId,
        });
        this.#sendRaw(JSON.stringify({ type: 'ack', clientMessageId: message.clientMessageId, runId }));
        return;
      }
      case 'cancel':
        await relay.cancel({ user: this.#user, runId: message.runId });
        return;
      case 'approve':
        // No answer of its own: the stored TOOL_APPROVAL_RESOLVED reaches every subscriber of the thread.
        await relay.approve({
          user: this.#user,
          threadId: message.threadId,
          runId: message.runId,
          toolCallId: message.toolCallId,
          approved: message.approved,
          ...(message.reason !== undefined ? { reason: message.reason } : {}),
        });
        return;
      case 'subscribe': {
        const subs = (this.#subscriptions ??= []);
        // A new subscribe to the same thread replaces the old one (a resume from another seq).
        const old = findSubscription(subs, message.threadId);
        if (old) {
          old.close();
          removeSubscription(subs, old);
        }
        if (subs.length >= this.#ctx.settings.maxSubscriptionsPerConnection) {
          throw new RelayError(
            'too_many_subscribers',
            `at most ${this.#ctx.settings.maxSubscriptionsPerConnection} threads per connection`,
          );
        }
        const subscription = await relay.subscribe({
          user: this.#user,
          threadId: message.threadId,
          afterSeq: message.afterSeq,
        });
        if (this.#closed || this.#subscriptions !== subs) {
          subscription.close();
          return;
        }
        const raced = findSubscription(subs, message.threadId);
        if (raced) {
          raced.close();
          removeSubscription(subs, raced);
        }
        subs.push(subscription);
        this.#deliver(subscription);
        return;
      }
    }
  }

  /**
   * Streams one subscription into the socket: one corked write per batch, waiting for drain past the
   * high-water mark. Callbacks rather than an async loop: an idle subscription then holds one pending
   * promise, not a suspended generator with its register file (a few hundred bytes per idle socket).
   */
  #deliver(subscription: Subscription): void {
    const ws = this.#ws;
    const end = (error: unknown): void => {
      if (error !== undefined && !this.#closed) {
        this.#sendFailure(error, subscription.threadId);
        if (error instanceof RelayError && error.code === 'slow_consumer') {
          ws.close(WS_CLOSE_CODES.tryAgainLater, 'slow consumer; resubscribe with your last seq');
        }
      }
      subscription.close();
      const list = this.#subscriptions;
      if (list) removeSubscription(list, subscription);
    };
    const next = (): void => {
      subscription.nextBatch().then(onBatch, end);
    };
    const onBatch = (batch: StoredEvent[] | null): void => {
      if (batch === null || this.#closed) return end(undefined);
      let flushed: Promise<void>;
      try {
        flushed = this.#sendBatch(batch);
      } catch (error) {
        return end(error ?? new Error('sending failed'));
      }
      if (ws.bufferedAmount > this.#ctx.settings.highWaterBytes) flushed.then(next, end);
      else next();
    };
    next();
  }

  /** Writes a batch as event frames in one corked write; resolves when the last frame is flushed. */
  #sendBatch(batch: StoredEvent[]): Promise<void> {
    const ws = this.#ws;
    const socket = (ws as unknown as { _socket?: Partial<Corkable> })._socket;
    const cork =
      typeof socket?.cork === 'function' && typeof socket.uncork === 'function' ? (socket as Corkable) : null;
    cork?.cork();
    try {
      const last = batch.length - 1;
      for (let i = 0; i < last; i++) ws.send(EVENT_PREFIX + batch[i]!.json + '}');
      return new Promise<void>((resolve) => ws.send(EVENT_PREFIX + batch[last]!.json + '}', () => resolve()));
    } finally {
      cork?.uncork();
    }
  }

  #sendFailure(error: unknown, ref: string | undefined): void {
    if (error instanceof RelayError) {
      this.#sendError(browserCode(error.code), error.message, ref, error.retryAfterMs);
      return;
    }
    this.#ctx.logger.error('[threadline/relay] unexpected error handling a browser message:', error);
    this.#sendError('internal_error', 'something went wrong on the server; try again', ref);
  }

  #sendError(code: BrowserErrorCode, message: string, ref?: string, retryAfterMs?: number): void {
    const text =
      message.length > LIMITS.maxErrorMessageLength
        ? `${message.slice(0, LIMITS.maxErrorMessageLength - 1)}…`
        : message;
    const frame: ErrorMessage = { type: 'error', code, message: text };
    if (ref !== undefined) frame.ref = ref;
    if (retryAfterMs !== undefined)
      frame.retryAfterMs = Math.min(Math.max(0, Math.ceil(retryAfterMs)), LIMITS.maxRetryAfterMs);
    this.#sendRaw(JSON.stringify(frame));
  }

  #sendRaw(frame: string): void {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return;
    this.#ws.send(frame);
  }
}

function findSubscription(list: readonly Subscription[], threadId: string): Subscription | undefined {
  for (const s of list) if (s.threadId === threadId) return s;
  return undefined;
}

function removeSubscription(list: Subscription[], subscription: Subscription): void {
  const i = list.indexOf(subscription);
  if (i !== -1) list.splice(i, 1);
}

function refOf(message: ClientMessage): string {
  switch (message.type) {
    case 'send':
    case 'regenerate':
      return message.clientMessageId;
    case 'subscribe':
      return message.threadId;
    case 'cancel':
    case 'approve':
      return message.runId;
  }
}

function browserCode(code: RelayError['code']): BrowserErrorCode {
  switch (code) {
    case 'conflict':
      return 'invalid_message';
    case 'closed':
      return 'agent_unavailable';
    case 'invalid_options': // a host misconfiguration, never the browser's fault
    case 'pubsub_unavailable': // only ever thrown when the host opens its pub/sub
      return 'internal_error';
    default:
      return code;
  }
}

import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { ClientMessageSchema, IdSchema, LIMITS, safeParse, safeParseJson } from '@threadline/contracts';
import type { BrowserErrorCode, ClientMessage, ErrorMessage } from '@threadline/contracts';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { MemoryConnectionCounter, type ConnectionCounter } from './connection-counter.js';
import { RelayError } from '../errors.js';
import { checkFunctionOption, checkIntegerLimits, checkOptionsObject, optionsError } from '../options.js';
import type { Relay } from '../core/relay.js';
import type { StoredEvent } from '../stores/store.js';
import type { Subscription } from '../core/subscription.js';

/** Bounds of the browser transport. Every field has a default; see {@link DEFAULT_WEBSOCKET_LIMITS}. */
export interface WebSocketLimits {
  /** Largest incoming frame; a larger one closes the socket with 1009. */
  maxFrameBytes: number;
  /** Invalid frames tolerated per connection; the next closes the socket with 1008. */
  maxBadFrames: number;
  /** Sustained incoming messages per second per connection (token bucket refill rate). */
  messagesPerSecond: number;
  /** Burst of incoming messages allowed above the rate (token bucket size). */
  messageBurst: number;
  /** Rate-limited frames tolerated per connection; the next closes the socket with 1008. */
  maxRateLimitedFrames: number;
  /** Requests (send/subscribe/cancel) one connection may have in flight. */
  maxPendingRequests: number;
  /** Threads one connection may subscribe to at once. */
  maxSubscriptionsPerConnection: number;
  /** Bytes queued on a socket above which event delivery waits for it to drain. */
  highWaterBytes: number;
  /** Ping interval; a peer that has not answered the previous ping is dropped. */
  heartbeatIntervalMs: number;
  /** Most open connections; further upgrades get 503. */
  maxConnections: number;
  /**
   * Open connections of one user (all their tabs and devices); the next is refused with
   * `too_many_connections` (HTTP 429, or an `error` frame and close 1013 with `unauthorized: 'close'`).
   */
  maxConnectionsPerUser: number;
  /**
   * With `unauthorized: 'close'`: signed-out sockets of one client address still being closed with 4401. The
   * next signed-out upgrade from that address gets HTTP 429 instead of an upgrade. Signed-in users are never
   * counted here.
   */
  maxUnauthenticatedPerAddress: number;
  /** `Retry-After` of a 429 refusal, in seconds. */
  retryAfterSeconds: number;
  /** Longest `authenticate(req)` may take before the upgrade gets 503. */
  authenticateTimeoutMs: number;
}

/** The defaults of {@link WebSocketLimits}. */
export const DEFAULT_WEBSOCKET_LIMITS: Readonly<WebSocketLimits> = Object.freeze({
  // A maximal `send` (32,000 UTF-16 units, up to 3 bytes each in UTF-8) plus its envelope fits.
  maxFrameBytes: 128 * 1024,
  maxBadFrames: 10,
  messagesPerSecond: 20,
  messageBurst: 40,
  maxRateLimitedFrames: 100,
  maxPendingRequests: 16,
  maxSubscriptionsPerConnection: 32,
  highWaterBytes: 1024 * 1024,
  heartbeatIntervalMs: 30_000,
  maxConnections: 10_000,
  // A person has a few tabs and devices: tens of sockets, not hundreds.
  maxConnectionsPerUser: 32,
  maxUnauthenticatedPerAddress: 32,
  retryAfterSeconds: 10,
  authenticateTimeoutMs: 10_000,
});

/** Options of {@link attachWebSocketServer}. */
export interface WebSocketTransportOptions {
  /** Who is connecting (e.g. from the session cookie); `null` refuses the upgrade with 401. */
  authenticate(req: IncomingMessage): Promise<{ id: string } | null>;
  /** Origins allowed to connect (exact `scheme://host:port`), or a predicate. A missing Origin is refused. */
  allowedOrigins: string[] | ((origin: string) => boolean);
  /**
   * Only upgrades on this path are handled (default: every path). The request target is read by
   * {@link upgradePath}: compared as sent, with the query ignored; a target that is not a plain path (absolute
   * form, fragment, dot segments, `//`) matches no path.
   */
  path?: string;
  /**
   * What to do with an upgrade that is not on `path` (or whose target {@link upgradePath} rejects).
   * `'refuse'` answers 404 (400 for a bad target) and closes the socket; `'leave'` leaves it to the server's
   * other 'upgrade' listeners, which must then answer or destroy it. Default: `'refuse'` when this transport
   * is the server's only 'upgrade' listener at the time of the request, else `'leave'`.
   */
  otherUpgrades?: 'refuse' | 'leave';
  /**
   * How an unauthenticated upgrade is refused. `'http'` (default) answers 401 before upgrading; a browser
   * cannot read that status and sees a network error. `'close'` completes the upgrade, sends an `error`
   * message with code `unauthorized` and closes with 4401, so a browser client can tell "sign in again" from
   * "the network dropped" and stop retrying.
   */
  unauthorized?: 'http' | 'close';
  limits?: Partial<WebSocketLimits>;
  /**
   * Counts open sockets per user and per address for `maxConnectionsPerUser` and
   * `maxUnauthenticatedPerAddress` (default: in this process). Back it with a shared store to make the bounds
   * hold across instances.
   */
  counter?: ConnectionCounter;
  /**
   * The client address `maxUnauthenticatedPerAddress` counts by (default: the socket's remote address).
   * Behind a reverse proxy, return the client address you trust the proxy to have forwarded.
   */
  addressOf?: (req: IncomingMessage) => string;
  logger?: Pick<Console, 'error' | 'warn'>;
}

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

const UNAUTHORIZED_FRAME = JSON.stringify({
  type: 'error',
  code: 'unauthorized',
  message: 'Not signed in: sign in and connect again.',
});

/** How long a refused, upgraded peer may take to answer the close before its socket is destroyed. */
const REFUSED_CLOSE_GRACE_MS = 2_000;

/** Tells an upgraded peer why it is refused (an `error` frame), closes with `closeCode`, and bounds the wait. */
function closeRefused(ws: WebSocket, frame: string, closeCode: number, reason: string): void {
  // An invalid frame from the peer during the close handshake is emitted as 'error': never unhandled.
  ws.on('error', ignore);
  if (ws.readyState !== ws.OPEN) return;
  ws.send(frame);
  ws.close(closeCode, reason);
  setTimeout(() => ws.terminate(), REFUSED_CLOSE_GRACE_MS).unref();
}

/** Tells an upgraded peer it is not authenticated, then closes with 4401. */
function closeUnauthorized(ws: WebSocket): void {
  closeRefused(ws, UNAUTHORIZED_FRAME, WS_CLOSE_CODES.unauthorized, 'unauthorized');
}

const userKey = (id: string) => `user:${id}`;

const EVENT_PREFIX = '{"type":"event","event":';

/**
 * Serves the browser protocol over `ws` on an HTTP server (or an existing `WebSocketServer`): authenticates
 * and checks Origin at upgrade (401/403 before upgrading), validates every frame, rate-limits, heartbeats,
 * and streams subscribed threads with resume by `afterSeq`.
 *
 * With a `WebSocketServer` the checks run right after the upgrade instead (a refused peer is closed with
 * 1008); pass the HTTP server when you can.
 *
 * @example
 * const server = http.createServer(app);
 * const ws = attachWebSocketServer(server, relay, {
 *   authenticate: async (req) => sessions.userFromCookie(req.headers.cookie),
 *   allowedOrigins: ['http://localhost:3000'],
 *   path: '/ws',
 * });
 * // on shutdown: await ws.close();
 */
export function attachWebSocketServer(
  target: WebSocketServer | Server,
  relay: Relay,
  options: WebSocketTransportOptions,
): { close(): Promise<void>; readonly connections: number } {
  checkWebSocketOptions(options);
  const limits: WebSocketLimits = { ...DEFAULT_WEBSOCKET_LIMITS, ...options.limits };
  const logger = options.logger ?? console;
  const allowed = options.allowedOrigins;
  const originAllowed = (origin: string | undefined): boolean => {
    if (!origin) return false;
    return typeof allowed === 'function' ? allowed(origin) : allowed.includes(origin);
  };
  const connections = new Set<Connection>();
  let upgrading = 0;
  let closed = false;
  const counter = options.counter ?? new MemoryConnectionCounter();
  const addressOf = options.addressOf ?? ((req: IncomingMessage) => req.socket.remoteAddress ?? '');
  /** Gives a slot back; a shared counter's failure is logged, never thrown into a socket's close. */
  const release = (key: string): void => {
    try {
      const done = counter.release(key);
      if (done)
        done.catch((error: unknown) => logger.error('[threadline/relay] counter.release failed:', error));
    } catch (error) {
      logger.error('[threadline/relay] counter.release failed:', error);
    }
  };
  const tooManyFrame = JSON.stringify({
    type: 'error',
    code: 'too_many_connections',
    message: `at most ${limits.maxConnectionsPerUser} open connections per user: close one, or try again later`,
  });
  const retryAfter = { 'Retry-After': String(limits.retryAfterSeconds) };

  const context: ConnectionContext = { relay, limits, logger, connections, release };

  async function identify(req: IncomingMessage): Promise<{ id: string } | null | 'timeout'> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), limits.authenticateTimeoutMs);
    });
    try {
      const user = await Promise.race([options.authenticate(req), timeout]);
      if (user === 'timeout' || user === null) return user;
      if (!user || !safeParse(IdSchema, user.id).ok) return null;
      return { id: user.id };
    } finally {
      clearTimeout(timer);
    }
  }

  let ownServer: WebSocketServer | undefined;
  let detach: () => void;
  if (target instanceof WebSocketServer) {
    const wss = target;
    const onConnection = (ws: WebSocket, req: IncomingMessage) => {
      ws.on('error', ignore);
      if (closed || !originAllowed(req.headers.origin) || connections.size >= limits.maxConnections) {
        ws.close(WS_CLOSE_CODES.policyViolation, 'origin not allowed or too many connections');
        return;
      }
      ws.pause?.();
      const admit = async (): Promise<void> => {
        const user = await identify(req);
        if (user === null) return closeUnauthorized(ws);
        if (user === 'timeout') return ws.close(WS_CLOSE_CODES.tryAgainLater, 'authentication timed out');
        if (ws.readyState !== ws.OPEN) return;
        if (!(await counter.acquire(userKey(user.id), limits.maxConnectionsPerUser))) {
          return closeRefused(ws, tooManyFrame, WS_CLOSE_CODES.tryAgainLater, 'too many connections');
        }
        if (ws.readyState !== ws.OPEN) return release(userKey(user.id));
        new Connection(ws, user, context);
      };
      admit().then(
        () => ws.resume?.(),
        (error: unknown) => {
          logger.error('[threadline/relay] authenticate() or the connection counter failed:', error);
          ws.close(WS_CLOSE_CODES.policyViolation, 'unauthorized');
        },
      );
    };
    wss.on('connection', onConnection);
    detach = () => wss.off('connection', onConnection);
  } else {
    const server = target;
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: limits.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    ownServer = wss;
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Every socket seen here gets an error listener first: a reset on a socket that no listener has
      // claimed would otherwise be an unhandled 'error' and end the process. A module-level no-op: a closure
      // would keep this upgrade's req and head alive with the socket.
      socket.on('error', ignore);
      try {
        const path = upgradePath(req);
        if (options.path !== undefined && path !== options.path) {
          const refuseOthers =
            options.otherUpgrades === undefined
              ? server.listenerCount('upgrade') === 1
              : options.otherUpgrades === 'refuse';
          if (refuseOthers)
            refuse(socket, path === null ? 400 : 404, path === null ? 'bad request target' : 'not found');
          return;
        }
        if (path === null) return refuse(socket, 400, 'bad request target');
        accept(req, socket, head);
      } catch (error) {
        logger.error('[threadline/relay] upgrade failed:', error);
        refuse(socket, 500, 'upgrade failed');
      }
    };
    const accept = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (closed) return refuse(socket, 503, 'shutting down');
      if (connections.size + upgrading >= limits.maxConnections)
        return refuse(socket, 503, 'too many connections');
      if (!originAllowed(req.headers.origin)) return refuse(socket, 403, 'origin not allowed');
      upgrading++;
      admit(req, socket, head).then(
        () => {
          upgrading--;
        },
        (error: unknown) => {
          upgrading--;
          logger.error('[threadline/relay] upgrade failed:', error);
          refuse(socket, 500, 'upgrade failed');
        },
      );
    };
    /** Authenticates, applies the per-user and per-address bounds, and upgrades (or refuses). */
    const admit = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
      let user: Awaited<ReturnType<typeof identify>>;
      try {
        user = await identify(req);
      } catch (error) {
        logger.error('[threadline/relay] authenticate() failed:', error);
        return refuse(socket, 500, 'authentication failed');
      }
      if (user === 'timeout') return refuse(socket, 503, 'authentication timed out');
      if (closed) return refuse(socket, 503, 'shutting down');
      if (user === null) {
        if (options.unauthorized !== 'close') return refuse(socket, 401, 'unauthorized');
        // A signed-out peer is upgraded to be told why: that socket counts against its address until it is
        // gone (at most the close grace after the upgrade), so one address cannot hold many.
        const addressKey = `address:${addressOf(req)}`;
        if (!(await counter.acquire(addressKey, limits.maxUnauthenticatedPerAddress))) {
          return refuse(socket, 429, 'too many signed-out connections from this address', retryAfter);
        }
        if (socket.destroyed) return release(addressKey);
        socket.once('close', () => release(addressKey));
        return wss.handleUpgrade(req, socket, head, closeUnauthorized);
      }
      if (socket.destroyed) return;
      const key = userKey(user.id);
      if (!(await counter.acquire(key, limits.maxConnectionsPerUser))) {
        if (options.unauthorized !== 'close') {
          return refuse(socket, 429, 'too many connections for this user', retryAfter);
        }
        if (socket.destroyed) return;
        return wss.handleUpgrade(req, socket, head, (ws) =>
          closeRefused(ws, tooManyFrame, WS_CLOSE_CODES.tryAgainLater, 'too many connections'),
        );
      }
      if (socket.destroyed || closed) {
        release(key);
        return refuse(socket, 503, 'shutting down');
      }
      // The slot goes back when the socket closes: here if the handshake fails, else with the Connection.
      const onAbort = () => release(key);
      socket.once('close', onAbort);
      wss.handleUpgrade(req, socket, head, (ws) => {
        socket.off('close', onAbort);
        new Connection(ws, user, context);
      });
    };
    server.on('upgrade', onUpgrade);
    detach = () => server.off('upgrade', onUpgrade);
  }

  // One timer for every connection: an idle socket costs no timer of its own.
  const heartbeat = setInterval(() => {
    for (const connection of connections) connection.heartbeat();
  }, limits.heartbeatIntervalMs);
  heartbeat.unref();

  return {
    get connections() {
      return connections.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      detach();
      const closing = [...connections].map((c) => c.shutdown());
      await Promise.all(closing);
      ownServer?.close();
    },
  };
}

interface ConnectionContext {
  relay: Relay;
  limits: WebSocketLimits;
  logger: Pick<Console, 'error' | 'warn'>;
  connections: Set<Connection>;
  /** Gives back a slot of the connection counter (the user's, when the connection closes). */
  release(key: string): void;
}

type Corkable = { cork(): void; uncork(): void };

const CONNECTION = Symbol('threadline.connection');
type Tagged = WebSocket & { [CONNECTION]?: Connection };

function ignore(): void {}

/** One browser socket: its user, its subscriptions, its rate-limit and bad-frame counters. */
class Connection {
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
    this.#tokens = ctx.limits.messageBurst;
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

  shutdown(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#closed || this.#ws.readyState === this.#ws.CLOSED) {
        this.#onClose();
        return resolve();
      }
      this.#ws.once('close', () => resolve());
      this.#ws.close(WS_CLOSE_CODES.goingAway, 'server shutting down');
      // A peer that never answers the close handshake must not hold shutdown up.
      setTimeout(() => this.#ws.terminate(), 2_000).unref();
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
    const limits = this.#ctx.limits;
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    if (size > limits.maxFrameBytes) {
      this.#sendError('message_too_large', `frames may be at most ${limits.maxFrameBytes} bytes`);
      this.#ws.close(WS_CLOSE_CODES.messageTooBig, 'message too large');
      return;
    }
    // Token bucket: `messageBurst` at once, `messagesPerSecond` sustained.
    const now = Date.now();
    this.#tokens = Math.min(
      limits.messageBurst,
      this.#tokens + ((now - this.#refilledAt) / 1000) * limits.messagesPerSecond,
    );
    this.#refilledAt = now;
    if (this.#tokens < 1) {
      this.#rateLimited++;
      this.#sendError('rate_limited', `more than ${limits.messagesPerSecond} messages per second; slow down`);
      if (this.#rateLimited > limits.maxRateLimitedFrames)
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
    if (this.#pending >= limits.maxPendingRequests) {
      this.#sendError('rate_limited', `at most ${limits.maxPendingRequests} requests may be in flight`, ref);
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
    if (this.#badFrames >= this.#ctx.limits.maxBadFrames) {
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
        if (subs.length >= this.#ctx.limits.maxSubscriptionsPerConnection) {
          throw new RelayError(
            'too_many_subscribers',
            `at most ${this.#ctx.limits.maxSubscriptionsPerConnection} threads per connection`,
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
      if (ws.bufferedAmount > this.#ctx.limits.highWaterBytes) flushed.then(next, end);
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

/**
 * The path of an upgrade request's target, read one way for every 'upgrade' listener of a server: the
 * origin-form path as sent (`/ws` of `/ws?x=1`), not decoded and not normalised. `null` for a target that is
 * not a plain path: absolute form (`http://host/ws`), `*`, authority form, a fragment (`#`, never valid in a
 * request), a `.` or `..` segment (also percent-encoded), an empty segment (`//ws`) or a backslash. Parsers
 * that normalise such targets differently disagree about them, so they match no path and get a 400.
 *
 * @example
 * server.on('upgrade', (req, socket) => {
 *   if (upgradePath(req) === '/other') return handleOther(req, socket);
 * });
 */
export function upgradePath(req: Pick<IncomingMessage, 'url'>): string | null {
  const url = req.url;
  if (typeof url !== 'string' || url.charCodeAt(0) !== 0x2f /* / */) return null;
  if (url.includes('#') || url.includes('\\')) return null;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const segments = path.split('/');
  // segments[0] is the empty string before the leading '/'; only the last segment may be empty ('/', '/a/').
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === '' && i < segments.length - 1) return null;
    if (DOT_SEGMENT.test(segment)) return null;
  }
  return path;
}

const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function refuse(socket: Duplex, status: number, reason: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const body = `${reason}\n`;
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/** Checks {@link attachWebSocketServer}'s options up front: a wrong one is a RelayError `invalid_options`. */
function checkWebSocketOptions(options: WebSocketTransportOptions): void {
  const factory = 'attachWebSocketServer';
  checkOptionsObject(factory, options);
  checkFunctionOption(factory, 'authenticate', options.authenticate, true);
  const origins = options.allowedOrigins;
  if (
    typeof origins !== 'function' &&
    !(Array.isArray(origins) && origins.every((o) => typeof o === 'string'))
  )
    throw optionsError(factory, 'allowedOrigins must be an array of origins or a function');
  if (options.path !== undefined && (typeof options.path !== 'string' || !options.path.startsWith('/')))
    throw optionsError(factory, 'path must start with "/"');
  if (
    options.otherUpgrades !== undefined &&
    options.otherUpgrades !== 'refuse' &&
    options.otherUpgrades !== 'leave'
  )
    throw optionsError(factory, "otherUpgrades must be 'refuse' or 'leave'");
  if (
    options.unauthorized !== undefined &&
    options.unauthorized !== 'http' &&
    options.unauthorized !== 'close'
  )
    throw optionsError(factory, "unauthorized must be 'http' or 'close'");
  checkFunctionOption(factory, 'addressOf', options.addressOf);
  checkIntegerLimits(factory, options.limits, DEFAULT_WEBSOCKET_LIMITS, () => 1);
}

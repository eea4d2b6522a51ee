import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { IdSchema, safeParse } from '@threadline/contracts';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { MemoryConnectionCounter } from './connection-counter.js';
import {
  CLOSE_GRACE_MS,
  Connection,
  ignore,
  userKey,
  WS_CLOSE_CODES,
  type ConnectionContext,
} from './ws-connection.js';
import { webSocketSettings, type WebSocketServerOptions } from './ws-options.js';
import type { Relay } from '../core/relay.js';

// The upgrade gate: everything decided before a browser socket becomes a Connection (path, Origin, capacity,
// authentication with a timeout, per-user and per-address slots; 400/401/403/404/429/503 before upgrading),
// and the transport's lifecycle (one heartbeat timer, shutdown).

/** What {@link attachWebSocketServer} returns. */
export interface WebSocketServerHandle {
  /** Stops taking upgrades and closes every connection with 1001 (a peer that does not answer is dropped). */
  close(): Promise<void>;
  /** Open connections of this transport. */
  readonly connections: number;
}

const UNAUTHORIZED_FRAME = JSON.stringify({
  type: 'error',
  code: 'unauthorized',
  message: 'Not signed in: sign in and connect again.',
});

/** How long a refused peer may take to read an HTTP refusal before its socket is destroyed. */
const REFUSAL_GRACE_MS = 1_000;

/** Tells an upgraded peer why it is refused (an `error` frame), closes with `closeCode`, and bounds the wait. */
function closeRefused(ws: WebSocket, frame: string, closeCode: number, reason: string): void {
  // An invalid frame from the peer during the close handshake is emitted as 'error': never unhandled.
  ws.on('error', ignore);
  if (ws.readyState !== ws.OPEN) return;
  ws.send(frame);
  ws.close(closeCode, reason);
  setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
}

/** Tells an upgraded peer it is not authenticated, then closes with 4401. */
function closeUnauthorized(ws: WebSocket): void {
  closeRefused(ws, UNAUTHORIZED_FRAME, WS_CLOSE_CODES.unauthorized, 'unauthorized');
}

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
  options: WebSocketServerOptions,
): WebSocketServerHandle {
  const settings = webSocketSettings(options);
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
    message: `at most ${settings.maxConnectionsPerUser} open connections per user: close one, or try again later`,
  });
  const retryAfter = { 'Retry-After': String(settings.retryAfterSeconds) };

  const context: ConnectionContext = { relay, settings, logger, connections, release };

  async function identify(req: IncomingMessage): Promise<{ id: string } | null | 'timeout'> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), settings.authenticateTimeoutMs);
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
      if (closed || !originAllowed(req.headers.origin) || connections.size >= settings.maxConnections) {
        ws.close(WS_CLOSE_CODES.policyViolation, 'origin not allowed or too many connections');
        return;
      }
      ws.pause?.();
      const admit = async (): Promise<void> => {
        const user = await identify(req);
        if (user === null) return closeUnauthorized(ws);
        if (user === 'timeout') return ws.close(WS_CLOSE_CODES.tryAgainLater, 'authentication timed out');
        if (ws.readyState !== ws.OPEN) return;
        if (!(await counter.acquire(userKey(user.id), settings.maxConnectionsPerUser))) {
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
      maxPayload: settings.maxFrameBytes,
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
      if (connections.size + upgrading >= settings.maxConnections)
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
        if (!(await counter.acquire(addressKey, settings.maxUnauthenticatedPerAddress))) {
          return refuse(socket, 429, 'too many signed-out connections from this address', retryAfter);
        }
        if (socket.destroyed) return release(addressKey);
        socket.once('close', () => release(addressKey));
        return wss.handleUpgrade(req, socket, head, closeUnauthorized);
      }
      if (socket.destroyed) return;
      const key = userKey(user.id);
      if (!(await counter.acquire(key, settings.maxConnectionsPerUser))) {
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
  }, settings.heartbeatIntervalMs);
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
  setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS).unref();
}

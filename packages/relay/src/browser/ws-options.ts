import type { IncomingMessage } from 'node:http';
import type { ConnectionCounter } from './connection-counter.js';
import { checkFunctionOption, checkIntegerLimits, checkOptionsObject, optionsError } from '../options.js';

/**
 * How many sockets the browser transport holds: the capacity a host sizes to its deployment. Every field has
 * a default; see {@link DEFAULT_WEBSOCKET_LIMITS}.
 */
export interface WebSocketLimits {
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
}

/**
 * How the browser transport polices and times each socket: frame and rate bounds derived from the protocol,
 * backpressure and timings. The defaults suit every host we know of; the knobs exist for benchmarks and unusual
 * deployments. Every field has a default; see {@link DEFAULT_WEBSOCKET_TUNING}.
 */
export interface WebSocketTuning {
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
  /** `Retry-After` of a 429 refusal, in seconds. */
  retryAfterSeconds: number;
  /** Longest `authenticate(req)` may take before the upgrade gets 503. */
  authenticateTimeoutMs: number;
}

/**
 * The tuning keys that `limits` still accepts.
 *
 * @deprecated pass them as `tuning`; `limits` stops accepting them in the next major.
 */
export type DeprecatedWebSocketTuningLimits = { [K in keyof WebSocketTuning]?: WebSocketTuning[K] };

/** The defaults of {@link WebSocketLimits}. */
export const DEFAULT_WEBSOCKET_LIMITS: Readonly<WebSocketLimits> = Object.freeze({
  maxConnections: 10_000,
  // A person has a few tabs and devices: tens of sockets, not hundreds.
  maxConnectionsPerUser: 32,
  maxUnauthenticatedPerAddress: 32,
});

/** The defaults of {@link WebSocketTuning}. */
export const DEFAULT_WEBSOCKET_TUNING: Readonly<WebSocketTuning> = Object.freeze({
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
  retryAfterSeconds: 10,
  authenticateTimeoutMs: 10_000,
});

/** Limits and tuning as the transport uses them. */
export type WebSocketSettings = WebSocketLimits & WebSocketTuning;

/** Options of {@link attachWebSocketServer}. */
export interface WebSocketServerOptions {
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
  /**
   * How many sockets it holds (see {@link WebSocketLimits}). The {@link WebSocketTuning} keys are still
   * accepted here for one release (deprecated: pass them as `tuning`).
   */
  limits?: Partial<WebSocketLimits> & DeprecatedWebSocketTuningLimits;
  /** Per-socket frame, rate, backpressure and timing knobs (see {@link WebSocketTuning}). */
  tuning?: Partial<WebSocketTuning>;
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
  /** Where failures of `authenticate`, the counter or a handler are logged (default `console`). */
  logger?: Pick<Console, 'error' | 'warn'>;
}

/** @deprecated use {@link WebSocketServerOptions} (the same type; this name goes away in the next major). */
export type WebSocketTransportOptions = WebSocketServerOptions;

const FACTORY = 'attachWebSocketServer';

/**
 * Checks {@link attachWebSocketServer}'s options up front (a wrong one is a RelayError `invalid_options`) and
 * returns the limits and tuning merged over their defaults. A tuning key is read from `tuning`, else from
 * `limits` (deprecated), else its default.
 */
export function webSocketSettings(options: WebSocketServerOptions): WebSocketSettings {
  checkOptionsObject(FACTORY, options);
  checkFunctionOption(FACTORY, 'authenticate', options.authenticate, true);
  const origins = options.allowedOrigins;
  if (
    typeof origins !== 'function' &&
    !(Array.isArray(origins) && origins.every((o) => typeof o === 'string'))
  )
    throw optionsError(FACTORY, 'allowedOrigins must be an array of origins or a function');
  if (options.path !== undefined && (typeof options.path !== 'string' || !options.path.startsWith('/')))
    throw optionsError(FACTORY, 'path must start with "/"');
  if (
    options.otherUpgrades !== undefined &&
    options.otherUpgrades !== 'refuse' &&
    options.otherUpgrades !== 'leave'
  )
    throw optionsError(FACTORY, "otherUpgrades must be 'refuse' or 'leave'");
  if (
    options.unauthorized !== undefined &&
    options.unauthorized !== 'http' &&
    options.unauthorized !== 'close'
  )
    throw optionsError(FACTORY, "unauthorized must be 'http' or 'close'");
  checkFunctionOption(FACTORY, 'addressOf', options.addressOf);
  const one = () => 1;
  checkIntegerLimits(
    FACTORY,
    options.limits,
    { ...DEFAULT_WEBSOCKET_LIMITS, ...DEFAULT_WEBSOCKET_TUNING },
    one,
  );
  checkIntegerLimits(FACTORY, options.tuning, DEFAULT_WEBSOCKET_TUNING, one, 'tuning');
  const settings: WebSocketSettings = { ...DEFAULT_WEBSOCKET_LIMITS, ...DEFAULT_WEBSOCKET_TUNING };
  // A key given as `undefined` keeps its default: a bound is never switched off by a missing value.
  for (const given of [options.limits, options.tuning]) {
    if (given === undefined) continue;
    for (const [key, value] of Object.entries(given) as [keyof WebSocketSettings, number | undefined][])
      if (value !== undefined) settings[key] = value;
  }
  return settings;
}

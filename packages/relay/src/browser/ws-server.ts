/**
 * `@threadline/relay/ws`: the browser transport, the relay's protocol over `ws` on an HTTP server. The upgrade
 * gate lives in ws-upgrade.ts, one socket's protocol in ws-connection.ts, the options in ws-options.ts.
 */
export { attachWebSocketServer, upgradePath } from './ws-upgrade.js';
export type { WebSocketServerHandle } from './ws-upgrade.js';
export { WS_CLOSE_CODES } from './ws-connection.js';
export { DEFAULT_WEBSOCKET_LIMITS, DEFAULT_WEBSOCKET_TUNING } from './ws-options.js';
export type {
  DeprecatedWebSocketTuningLimits,
  WebSocketLimits,
  WebSocketServerOptions,
  WebSocketTransportOptions,
  WebSocketTuning,
} from './ws-options.js';
export { MemoryConnectionCounter } from './connection-counter.js';
export type { ConnectionCounter } from './connection-counter.js';

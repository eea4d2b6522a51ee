/**
 * @threadline/relay: persist, sequence, fan out and resume Threadline agent runs, with agent transports (HTTP
 * SSE, in-process) and a browser transport over `ws`. Store adapters live at `./memory`, `./sqlite`, `./mongodb`.
 */
export { createRelay, DEFAULT_RELAY_LIMITS, DEFAULT_RELAY_TUNING } from './core/relay.js';
export type {
  ApproveInput,
  Relay,
  RelayHealth,
  RelayLimits,
  RelayTuning,
  DeprecatedTuningLimits,
  RelayOptions,
  RelayClusterOptions,
  RunTokenIssuer,
  SendInput,
  RegenerateInput,
  SubscribeInput,
  ToolEventSink,
  UserShares,
} from './core/relay.js';
export type { Subscription } from './core/subscription.js';
export { InProcessPubSub } from './core/pubsub.js';
export { AUTO_TITLE_MAX_LENGTH, titleFromMessage } from './core/titles.js';
export type { ControlListener, ControlMessage, ThreadPubSub, ThreadListener } from './core/pubsub.js';
export { AgentTransportError, inProcessAgentTransport } from './agent/agent-transport.js';
export type { AgentTransport, AgentFailureCode, InProcessRunner } from './agent/agent-transport.js';
export { httpAgentTransport } from './agent/http-agent-transport.js';
export type { HttpAgentTransportOptions } from './agent/http-agent-transport.js';
// The WebSocket server moved to `@threadline/relay/ws`; these stay for one release (then `ws` becomes an
// optional peer dependency).
export {
  /** @deprecated import from `@threadline/relay/ws` */
  attachWebSocketServer,
  /** @deprecated import from `@threadline/relay/ws` */
  DEFAULT_WEBSOCKET_LIMITS,
  /** @deprecated import from `@threadline/relay/ws` */
  upgradePath,
  /** @deprecated import from `@threadline/relay/ws` */
  WS_CLOSE_CODES,
  /** @deprecated import from `@threadline/relay/ws` */
  MemoryConnectionCounter,
} from './browser/ws-server.js';
export type {
  /** @deprecated import from `@threadline/relay/ws` */
  WebSocketLimits,
  /** @deprecated import `WebSocketServerOptions` from `@threadline/relay/ws` */
  WebSocketTransportOptions,
  /** @deprecated import from `@threadline/relay/ws` */
  ConnectionCounter,
} from './browser/ws-server.js';
export { RelayError, StoreError, RELAY_ERROR_CODES } from './errors.js';
export type { RelayErrorCode } from './errors.js';
export type {
  AppendBatch,
  ClaimRunsInput,
  DeleteThreadResult,
  EventStore,
  StoredEvent,
  StartRunInput,
  StartRunResult,
  RunLease,
  RunRecord,
  RunStatus,
  ThreadRecord,
  PruneResult,
} from './stores/store.js';
export { MAX_RUN_STATE_LENGTH } from './stores/store.js';
export { DEFAULT_PRUNE_LIMIT, MAX_PRUNE_LIMIT } from './stores/store.js';

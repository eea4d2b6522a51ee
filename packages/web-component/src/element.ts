/**
 * `@threadline/web-component/element`: everything the package exports, without registering `<agent-chat>`
 * (for a page that defines the class under its own tag name or in a scoped registry).
 *
 * @example
 * import { AgentChat } from '@threadline/web-component/element';
 * customElements.define('support-chat', class extends AgentChat {});
 */
export { AgentChat } from './agent-chat-element.js';
export type { AgentChatLimits } from './agent-chat-element.js';
export type {
  AgentChatEventDetail,
  AgentChatRunFinishedDetail,
  AgentChatErrorDetail,
  AgentChatConnectionDetail,
  AgentChatRegenerateDetail,
} from './events.js';
export { AgentChatError, AGENT_CHAT_ERROR_CODES } from './errors.js';
export type { AgentChatErrorCode } from './errors.js';
export { WebSocketTransport } from './transport.js';
export type {
  ChatTransport,
  TransportConnection,
  TransportListener,
  TransportCloseInfo,
} from './transport.js';
export { DEFAULT_RECONNECT, backoffDelay } from './backoff.js';
export type { ReconnectOptions } from './backoff.js';
export { DEFAULT_MODEL_LIMITS } from './thread-model.js';
export type {
  ChatItem,
  UserItem,
  AssistantItem,
  ToolItem,
  RunErrorItem,
  HistoryDividerItem,
  ThreadModelLimits,
} from './thread-model.js';
export { DEFAULT_MAX_QUEUED_FRAMES } from './connection.js';
export type { ConnectionState, ConnectionChange, ChatProblem } from './connection.js';
export { renderMarkdown, safeUrl } from './markdown.js';

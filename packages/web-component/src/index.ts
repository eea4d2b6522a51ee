/**
 * @threadline/web-component: the `<agent-chat>` element. Importing this module defines the element.
 *
 * @example
 * import '@threadline/web-component';
 * document.body.insertAdjacentHTML('beforeend', '<agent-chat endpoint="wss://api.example.com/ws" thread-id="t-1"></agent-chat>');
 */
export { AgentChat } from './agent-chat.js';
export type {
  AgentChatEventDetail,
  AgentChatRunFinishedDetail,
  AgentChatErrorDetail,
  AgentChatConnectionDetail,
  AgentChatRegenerateDetail,
  AgentChatLimits,
} from './agent-chat.js';
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

// `@threadline/contracts/core`: the parts of the contract that need no zod (limits, id pattern, protocol version,
// the error-brand check, the agent service's HTTP protocol, the request headers an HTTP adapter does not forward),
// for code that must stay small, such as the browser element's bundle.
export * from './limits.js';
export { isBrandedInstance } from './brand.js';
export { NOT_FORWARDED_REQUEST_HEADERS } from './http-headers.js';
export {
  AGENT_HTTP_PATHS,
  AGENT_HTTP_ERROR_STATUS,
  AGENT_HTTP_ERROR_CODES,
  JSON_MEDIA_TYPE,
  SSE_MEDIA_TYPE,
  SSE_HEARTBEAT,
  agentRunPath,
  matchAgentRunPath,
  sseEventFrame,
  agentHttpErrorBody,
} from './agent-http.js';
export type { AgentHttpErrorBody, AgentHttpErrorCode } from './agent-http.js';
export { EVENT_TYPES } from './event-types.js';
export type { EventType } from './event-types.js';

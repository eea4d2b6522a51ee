/**
 * @threadline/contracts: every wire shape of Threadline, defined once with zod, with types, factories,
 * typed parse errors, JSON Schema and an AG-UI bridge.
 */
export { PROTOCOL_VERSION, LIMITS, ID_PATTERN, TOOL_NAME_PATTERN } from './limits.js';
export { isBrandedInstance } from './brand.js';
export { FORBIDDEN_KEYS, JsonValueSchema, JsonObjectSchema, findNonJson } from './json.js';
export type { JsonValue } from './json.js';
export {
  IdSchema,
  ToolNameSchema,
  TimestampSchema,
  SeqSchema,
  CodeSchema,
  LabelSchema,
  ErrorMessageSchema,
} from './primitives.js';
export {
  EVENT_TYPES,
  TERMINAL_EVENT_TYPES,
  HISTORY_WINDOW_REASONS,
  RUN_ERROR_CODES,
  isTerminalEvent,
  RunStartedEventSchema,
  ToolCallStartedEventSchema,
  ToolCallResultEventSchema,
  TextMessageChunkEventSchema,
  RunErrorEventSchema,
  RunFinishedEventSchema,
  UserMessageEventSchema,
  StateChangedEventSchema,
  HistoryWindowedEventSchema,
  ToolApprovalRequestedEventSchema,
  ToolApprovalResolvedEventSchema,
  RunUsageSchema,
  AgentEventSchema,
  SequencedRunStartedEventSchema,
  SequencedToolCallStartedEventSchema,
  SequencedToolCallResultEventSchema,
  SequencedTextMessageChunkEventSchema,
  SequencedRunErrorEventSchema,
  SequencedRunFinishedEventSchema,
  SequencedUserMessageEventSchema,
  SequencedStateChangedEventSchema,
  SequencedHistoryWindowedEventSchema,
  SequencedToolApprovalRequestedEventSchema,
  SequencedToolApprovalResolvedEventSchema,
  SequencedAgentEventSchema,
} from './events.js';
export type {
  EventType,
  RunErrorCode,
  RunStartedEvent,
  ToolCallStartedEvent,
  ToolCallResultEvent,
  TextMessageChunkEvent,
  RunErrorEvent,
  RunFinishedEvent,
  UserMessageEvent,
  StateChangedEvent,
  HistoryWindowedEvent,
  ToolApprovalRequestedEvent,
  ToolApprovalResolvedEvent,
  RunUsage,
  AgentEvent,
  SequencedAgentEvent,
  AgentEventOf,
  SequencedAgentEventOf,
} from './events.js';
export { ContractError, CONTRACT_ERROR_CODES, formatPath, toContractIssues } from './errors.js';
export type { ContractIssue, ContractErrorCode } from './errors.js';
export {
  safeParse,
  parseWith,
  safeParseJson,
  parseEvent,
  parseSequencedEvent,
  parseEventLenient,
} from './parse.js';
export type { ParseResult, UnknownEvent, LenientEvent } from './parse.js';
export {
  createRunStartedEvent,
  createToolCallStartedEvent,
  createToolCallResultEvent,
  createTextMessageChunkEvent,
  createRunErrorEvent,
  createRunFinishedEvent,
  createUserMessageEvent,
  createStateChangedEvent,
  createHistoryWindowedEvent,
  createToolApprovalRequestedEvent,
  createToolApprovalResolvedEvent,
} from './factories.js';
export type { EventInit } from './factories.js';
export { RunRequestSchema, RunResumeSchema, ToolsRefSchema, TOOLS_BASE_URL_PATTERN } from './run-request.js';
export type { RunRequest, RunRequestInput, RunResume, ToolsRef } from './run-request.js';
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
export { AgentHttpErrorBodySchema } from './agent-http-schema.js';
export {
  SendMessageSchema,
  SubscribeMessageSchema,
  CancelMessageSchema,
  RegenerateMessageSchema,
  ApproveMessageSchema,
  ClientMessageSchema,
  EventMessageSchema,
  AckMessageSchema,
  ErrorMessageWireSchema,
  ServerMessageSchema,
  BROWSER_ERROR_CODES,
  RUN_REFUSAL_CODES,
} from './browser.js';
export type {
  SendMessage,
  SubscribeMessage,
  CancelMessage,
  RegenerateMessage,
  ApproveMessage,
  ClientMessage,
  EventMessage,
  AckMessage,
  ErrorMessage,
  ServerMessage,
  BrowserErrorCode,
  RunRefusalCode,
} from './browser.js';
export {
  TOOL_ERROR_STATUS,
  TOOL_ERROR_CODES,
  ToolIssueSchema,
  ToolErrorSchema,
  ToolResultSchema,
  ACT_AS_AUDIENCE,
  AGENT_SERVICE_AUDIENCE,
  ActAsClaimsSchema,
  ToolManifestEntrySchema,
  ToolManifestSchema,
} from './tools.js';
export type {
  ToolErrorCode,
  ToolIssue,
  ToolError,
  ToolResult,
  ActAsClaims,
  ToolManifestEntry,
  ToolManifest,
} from './tools.js';
export { createAgUiMapper, createAgUiMessageBuilder, toAgUiEvents, toAgUiMessages } from './ag-ui.js';
export type { AgUiEvent, AgUiMapper, AgUiMessage, AgUiMessageBuilder } from './ag-ui.js';
export { WIRE_SCHEMAS, toJsonSchema } from './json-schema.js';

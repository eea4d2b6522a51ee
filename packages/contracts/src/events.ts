import { z } from 'zod';
import { JsonValueSchema } from './json.js';
import type { EventType } from './event-types.js';
import { LIMITS, TOOL_NAME_PATTERN } from './limits.js';
import {
  boundedString,
  CodeSchema,
  ErrorMessageSchema,
  IdSchema,
  LabelSchema,
  SeqSchema,
  TimestampSchema,
  ToolNameSchema,
} from './primitives.js';

export { EVENT_TYPES, type EventType } from './event-types.js';

const base = {
  threadId: IdSchema,
  runId: IdSchema,
  ts: TimestampSchema,
};

/**
 * A run began. The first event of a run (after the USER_MESSAGE that started it, if any). `regenerates` names the
 * run whose answer this run replaces (a `regenerate` from the browser): a UI shows this run's answer in place of
 * that run's, under the same user message.
 */
export const RunStartedEventSchema = z.strictObject({
  type: z.literal('RUN_STARTED'),
  ...base,
  parentRunId: IdSchema.optional(),
  regenerates: IdSchema.optional(),
});

/**
 * The agent started calling a tool. `args` is the call's arguments as the model sent them (JSON text, normally
 * an object), at most {@link LIMITS.maxDeltaLength} characters; absent when unknown or longer.
 */
export const ToolCallStartedEventSchema = z.strictObject({
  type: z.literal('TOOL_CALL_STARTED'),
  ...base,
  toolCallId: IdSchema,
  toolName: ToolNameSchema,
  label: LabelSchema.optional(),
  args: boundedString(LIMITS.maxDeltaLength).optional(),
});

/** A tool call ended; `ok: false` carries a readable `error`. */
export const ToolCallResultEventSchema = z.strictObject({
  type: z.literal('TOOL_CALL_RESULT'),
  ...base,
  toolCallId: IdSchema,
  toolName: ToolNameSchema,
  label: LabelSchema.optional(),
  ok: z.boolean(),
  error: ErrorMessageSchema.optional(),
});

/** A piece of assistant text. Chunks with the same `messageId` concatenate into one assistant message. */
export const TextMessageChunkEventSchema = z.strictObject({
  type: z.literal('TEXT_MESSAGE_CHUNK'),
  ...base,
  messageId: IdSchema,
  delta: boundedString(LIMITS.maxDeltaLength),
});

/** The run failed. Terminal: nothing of this run follows. */
export const RunErrorEventSchema = z.strictObject({
  type: z.literal('RUN_ERROR'),
  ...base,
  message: ErrorMessageSchema,
  code: CodeSchema.optional(),
});

/** An ISO 8601 time in UTC, as `Date.prototype.toISOString()` writes it (milliseconds optional). */
const ISO_UTC_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/;

const tokenCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/**
 * A run's token usage as the model reported it, summed over the run's model requests (`requests` of them).
 * Absent when the model reports none (e.g. the offline demo model).
 */
export const RunUsageSchema = z.strictObject({
  inputTokens: tokenCount,
  outputTokens: tokenCount,
  totalTokens: tokenCount,
  requests: tokenCount.optional(),
});

/**
 * The run ended normally. Terminal. `traceId` links to the OpenAI traces dashboard when tracing is on; `usage`
 * (addition) is the run's token usage when the model reported it.
 */
export const RunFinishedEventSchema = z.strictObject({
  type: z.literal('RUN_FINISHED'),
  ...base,
  traceId: boundedString(LIMITS.maxIdLength, { min: 1 }).optional(),
  usage: RunUsageSchema.optional(),
});

/**
 * Addition: the user's own message, written to the log by the relay before the run it starts, so that a
 * thread's history replays whole from the log. `runId` is the run this message started.
 */
export const UserMessageEventSchema = z.strictObject({
  type: z.literal('USER_MESSAGE'),
  ...base,
  messageId: IdSchema,
  clientMessageId: IdSchema,
  userId: IdSchema,
  text: boundedString(LIMITS.maxMessageLength, { min: 1 }),
});

/**
 * Addition: a tool changed stored state (e.g. the user's profile). `scope` names what changed and `value`
 * is its new value, so a UI can update without reloading.
 */
export const StateChangedEventSchema = z.strictObject({
  type: z.literal('STATE_CHANGED'),
  ...base,
  scope: boundedString(LIMITS.maxToolNameLength, { min: 1, pattern: TOOL_NAME_PATTERN }),
  value: JsonValueSchema,
});

/** Why a run's model did not see the whole thread (HISTORY_WINDOWED `reason`). */
export const HISTORY_WINDOW_REASONS = ['windowed', 'compacted'] as const;

/**
 * Addition: this run's model did not see the whole thread. It got `windowItems` items of the agent's history
 * (messages, tool calls and results): with `reason` `windowed` (the default when absent) the newest ones, older
 * ones left out; with `compacted` earlier turns replaced by a summary (a compaction item). Written once per run
 * that left something out, right after RUN_STARTED, so a UI can show a quiet divider; optional for consumers.
 */
export const HistoryWindowedEventSchema = z.strictObject({
  type: z.literal('HISTORY_WINDOWED'),
  ...base,
  windowItems: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  reason: z.enum(HISTORY_WINDOW_REASONS).optional(),
});

/**
 * Addition: the run paused because a tool call needs a person's approval. The run is then
 * `awaiting_approval`: neither running nor finished, with no terminal event yet; the thread's owner decides
 * with an `approve` frame before `expiresAt` (ISO 8601), else the run ends with RUN_ERROR `approval_expired`.
 * `args` is the call's arguments as the model sent them (JSON text), like TOOL_CALL_STARTED's.
 */
export const ToolApprovalRequestedEventSchema = z.strictObject({
  type: z.literal('TOOL_APPROVAL_REQUESTED'),
  ...base,
  toolCallId: IdSchema,
  toolName: ToolNameSchema,
  label: LabelSchema.optional(),
  args: boundedString(LIMITS.maxDeltaLength),
  expiresAt: boundedString(32, {
    min: 1,
    pattern: ISO_UTC_PATTERN,
    patternMessage: 'must be an ISO 8601 UTC time such as 2026-01-31T12:00:00.000Z',
  }),
});

/**
 * Addition: the decision on a pending tool call, written before the run continues. `decidedBy` is the id of
 * the user who decided; `reason` is theirs, optional. One per TOOL_APPROVAL_REQUESTED at most.
 */
export const ToolApprovalResolvedEventSchema = z.strictObject({
  type: z.literal('TOOL_APPROVAL_RESOLVED'),
  ...base,
  toolCallId: IdSchema,
  approved: z.boolean(),
  decidedBy: IdSchema,
  reason: boundedString(LIMITS.maxApprovalReasonLength).optional(),
});

/** Every contract event, discriminated on `type`. */
export const AgentEventSchema = z.discriminatedUnion('type', [
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
]);

const seq = { seq: SeqSchema };
/** RUN_STARTED as stored and sent to browsers (with `seq`). */
export const SequencedRunStartedEventSchema = RunStartedEventSchema.extend(seq);
/** TOOL_CALL_STARTED with `seq`. */
export const SequencedToolCallStartedEventSchema = ToolCallStartedEventSchema.extend(seq);
/** TOOL_CALL_RESULT with `seq`. */
export const SequencedToolCallResultEventSchema = ToolCallResultEventSchema.extend(seq);
/** TEXT_MESSAGE_CHUNK with `seq`. */
export const SequencedTextMessageChunkEventSchema = TextMessageChunkEventSchema.extend(seq);
/** RUN_ERROR with `seq`. */
export const SequencedRunErrorEventSchema = RunErrorEventSchema.extend(seq);
/** RUN_FINISHED with `seq`. */
export const SequencedRunFinishedEventSchema = RunFinishedEventSchema.extend(seq);
/** USER_MESSAGE with `seq`. */
export const SequencedUserMessageEventSchema = UserMessageEventSchema.extend(seq);
/** STATE_CHANGED with `seq`. */
export const SequencedStateChangedEventSchema = StateChangedEventSchema.extend(seq);
/** HISTORY_WINDOWED with `seq`. */
export const SequencedHistoryWindowedEventSchema = HistoryWindowedEventSchema.extend(seq);

/** TOOL_APPROVAL_REQUESTED with `seq`. */
export const SequencedToolApprovalRequestedEventSchema = ToolApprovalRequestedEventSchema.extend(seq);
/** TOOL_APPROVAL_RESOLVED with `seq`. */
export const SequencedToolApprovalResolvedEventSchema = ToolApprovalResolvedEventSchema.extend(seq);

/** An event as stored and as sent to browsers: carries the per-thread `seq` assigned by the relay. */
export const SequencedAgentEventSchema = z.discriminatedUnion('type', [
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
]);

/** A RUN_STARTED event. */
export type RunStartedEvent = z.infer<typeof RunStartedEventSchema>;
/** A TOOL_CALL_STARTED event. */
export type ToolCallStartedEvent = z.infer<typeof ToolCallStartedEventSchema>;
/** A TOOL_CALL_RESULT event. */
export type ToolCallResultEvent = z.infer<typeof ToolCallResultEventSchema>;
/** A TEXT_MESSAGE_CHUNK event. */
export type TextMessageChunkEvent = z.infer<typeof TextMessageChunkEventSchema>;
/** A RUN_ERROR event. */
export type RunErrorEvent = z.infer<typeof RunErrorEventSchema>;
/** A RUN_FINISHED event. */
export type RunFinishedEvent = z.infer<typeof RunFinishedEventSchema>;
/** A USER_MESSAGE event (addition: the user's own message). */
export type UserMessageEvent = z.infer<typeof UserMessageEventSchema>;
/** A STATE_CHANGED event (addition: a tool changed stored state). */
export type StateChangedEvent = z.infer<typeof StateChangedEventSchema>;
/** A HISTORY_WINDOWED event (addition: the model saw only the newest part of the thread). */
export type HistoryWindowedEvent = z.infer<typeof HistoryWindowedEventSchema>;
/** A TOOL_APPROVAL_REQUESTED event (addition: a tool call waits for a person's decision). */
export type ToolApprovalRequestedEvent = z.infer<typeof ToolApprovalRequestedEventSchema>;
/** A TOOL_APPROVAL_RESOLVED event (addition: the decision on a pending tool call). */
export type ToolApprovalResolvedEvent = z.infer<typeof ToolApprovalResolvedEventSchema>;
/** Token usage of a run (RUN_FINISHED `usage`). */
export type RunUsage = z.infer<typeof RunUsageSchema>;
/** Any contract event, without `seq`. */
export type AgentEvent = z.infer<typeof AgentEventSchema>;
/** Any contract event as stored and sent to browsers, with `seq`. */
export type SequencedAgentEvent = z.infer<typeof SequencedAgentEventSchema>;
/** An event of one type, e.g. `AgentEventOf<'RUN_ERROR'>`. */
export type AgentEventOf<T extends EventType> = Extract<AgentEvent, { type: T }>;
/** A sequenced event of one type, e.g. `SequencedAgentEventOf<'USER_MESSAGE'>`. */
export type SequencedAgentEventOf<T extends EventType> = Extract<SequencedAgentEvent, { type: T }>;

/** Terminal event types: exactly one of them ends every run. */
export const TERMINAL_EVENT_TYPES = ['RUN_FINISHED', 'RUN_ERROR'] as const;

/** True for RUN_FINISHED and RUN_ERROR. */
export function isTerminalEvent(event: { type: string }): event is RunFinishedEvent | RunErrorEvent {
  return event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR';
}

/** Error codes the system itself writes into RUN_ERROR events. Hosts may use their own as well. */
export const RUN_ERROR_CODES = [
  'model_error',
  'max_turns_exceeded',
  'tool_client_error',
  'aborted',
  'cancelled',
  'agent_unreachable',
  'agent_busy',
  'agent_stream_ended',
  'agent_stream_invalid',
  'agent_idle_timeout',
  'relay_restarted',
  'approval_expired',
  'owner_lost',
  'store_error',
  'store_unavailable',
  'shutdown',
  'internal_error',
] as const;
/** One of {@link RUN_ERROR_CODES}. */
export type RunErrorCode = (typeof RUN_ERROR_CODES)[number];

import type { z } from 'zod';
import {
  HistoryWindowedEventSchema,
  RunErrorEventSchema,
  RunFinishedEventSchema,
  RunStartedEventSchema,
  StateChangedEventSchema,
  TextMessageChunkEventSchema,
  ToolCallResultEventSchema,
  ToolCallStartedEventSchema,
  UserMessageEventSchema,
  ToolApprovalRequestedEventSchema,
  ToolApprovalResolvedEventSchema,
} from './events.js';
import type {
  HistoryWindowedEvent,
  RunErrorEvent,
  RunFinishedEvent,
  RunStartedEvent,
  StateChangedEvent,
  TextMessageChunkEvent,
  ToolCallResultEvent,
  ToolCallStartedEvent,
  UserMessageEvent,
  ToolApprovalRequestedEvent,
  ToolApprovalResolvedEvent,
} from './events.js';
import { parseWith } from './parse.js';

/** Factory input: the event's fields without `type`; `ts` defaults to `Date.now()`. */
export type EventInit<E extends { type: string; ts: number }> = Omit<E, 'type' | 'ts'> & { ts?: number };

function factory<E extends { type: string; ts: number }>(schema: z.ZodType<E>, type: E['type']) {
  return (init: EventInit<E>): E =>
    parseWith(schema, { ...init, type, ts: init.ts ?? Date.now() }, `${type} event`);
}

/**
 * Builds a RUN_STARTED event, validated. Throws {@link ContractError} on bad input.
 * @example createRunStartedEvent({ threadId: 't1', runId: 'r1' })
 */
export const createRunStartedEvent: (init: EventInit<RunStartedEvent>) => RunStartedEvent = factory(
  RunStartedEventSchema,
  'RUN_STARTED',
);
/** Builds a TOOL_CALL_STARTED event, validated. */
export const createToolCallStartedEvent: (init: EventInit<ToolCallStartedEvent>) => ToolCallStartedEvent =
  factory(ToolCallStartedEventSchema, 'TOOL_CALL_STARTED');
/** Builds a TOOL_CALL_RESULT event, validated. */
export const createToolCallResultEvent: (init: EventInit<ToolCallResultEvent>) => ToolCallResultEvent =
  factory(ToolCallResultEventSchema, 'TOOL_CALL_RESULT');
/** Builds a TEXT_MESSAGE_CHUNK event, validated. */
export const createTextMessageChunkEvent: (init: EventInit<TextMessageChunkEvent>) => TextMessageChunkEvent =
  factory(TextMessageChunkEventSchema, 'TEXT_MESSAGE_CHUNK');
/** Builds a RUN_ERROR event, validated. */
export const createRunErrorEvent: (init: EventInit<RunErrorEvent>) => RunErrorEvent = factory(
  RunErrorEventSchema,
  'RUN_ERROR',
);
/** Builds a RUN_FINISHED event, validated. */
export const createRunFinishedEvent: (init: EventInit<RunFinishedEvent>) => RunFinishedEvent = factory(
  RunFinishedEventSchema,
  'RUN_FINISHED',
);
/** Builds a USER_MESSAGE event, validated. */
export const createUserMessageEvent: (init: EventInit<UserMessageEvent>) => UserMessageEvent = factory(
  UserMessageEventSchema,
  'USER_MESSAGE',
);
/** Builds a STATE_CHANGED event, validated. */
export const createStateChangedEvent: (init: EventInit<StateChangedEvent>) => StateChangedEvent = factory(
  StateChangedEventSchema,
  'STATE_CHANGED',
);
/** Builds a HISTORY_WINDOWED event, validated. */
export const createHistoryWindowedEvent: (init: EventInit<HistoryWindowedEvent>) => HistoryWindowedEvent =
  factory(HistoryWindowedEventSchema, 'HISTORY_WINDOWED');
/** Builds a TOOL_APPROVAL_REQUESTED event, validated. */
export const createToolApprovalRequestedEvent: (
  init: EventInit<ToolApprovalRequestedEvent>,
) => ToolApprovalRequestedEvent = factory(ToolApprovalRequestedEventSchema, 'TOOL_APPROVAL_REQUESTED');
/** Builds a TOOL_APPROVAL_RESOLVED event, validated. */
export const createToolApprovalResolvedEvent: (
  init: EventInit<ToolApprovalResolvedEvent>,
) => ToolApprovalResolvedEvent = factory(ToolApprovalResolvedEventSchema, 'TOOL_APPROVAL_RESOLVED');

// Zod-free, so that `@threadline/contracts/core` can export it to the browser element.

/** The event types of the contract. The first six are the core; the rest are documented additions. */
export const EVENT_TYPES = [
  'RUN_STARTED',
  'TOOL_CALL_STARTED',
  'TOOL_CALL_RESULT',
  'TEXT_MESSAGE_CHUNK',
  'RUN_ERROR',
  'RUN_FINISHED',
  'USER_MESSAGE',
  'STATE_CHANGED',
  'HISTORY_WINDOWED',
  'TOOL_APPROVAL_REQUESTED',
  'TOOL_APPROVAL_RESOLVED',
] as const;
/** One of {@link EVENT_TYPES}. */
export type EventType = (typeof EVENT_TYPES)[number];

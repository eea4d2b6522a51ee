import type { BrowserErrorCode, EventType } from '@threadline/contracts';

/*
 * Mirrors of the few contract constants the element needs at run time. Importing them from
 * @threadline/contracts would pull zod into the browser bundle (the contracts entry builds its schemas at
 * module load) and make zod a run-time dependency of this package, both far over the 20 KiB budget.
 * test/protocol.test.ts fails when these drift from the contracts package.
 */

/** Contract limits used by the guard (see LIMITS in @threadline/contracts). */
export const WIRE_LIMITS = {
  maxIdLength: 128,
  maxMessageLength: 32_000,
  maxDeltaLength: 32_768,
  maxToolNameLength: 64,
  maxLabelLength: 200,
  maxErrorMessageLength: 4_096,
  maxCodeLength: 64,
  maxRetryAfterMs: 86_400_000,
} as const;

/** See ID_PATTERN in @threadline/contracts. */
export const WIRE_ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;

/** See EVENT_TYPES in @threadline/contracts. */
export const KNOWN_EVENT_TYPES: readonly EventType[] = [
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
];

/** Server error codes after which retrying cannot help until the page acts (sign in again, etc.). */
export const FATAL_ERROR_CODES: readonly BrowserErrorCode[] = ['unauthorized', 'forbidden', 'thread_deleted'];

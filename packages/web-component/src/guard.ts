import type { AckMessage, ErrorMessage, SequencedAgentEvent } from '@threadline/contracts';
import { EVENT_TYPES, ID_PATTERN, LIMITS } from '@threadline/contracts/core';

/*
 * Why a hand-written guard instead of the zod schemas in @threadline/contracts: the script-tag bundle has a
 * 20 KiB gzip budget and zod alone is larger than that. This guard checks exactly what the element relies on
 * (types, lengths, id shapes from the contract's LIMITS and ID_PATTERN, which the zod-free
 * `@threadline/contracts/core` provides); lengths are `.length`, UTF-16 code units, the contract's unit. Unknown
 * extra keys are tolerated so an older element keeps working against a newer server.
 */

/** What one server frame turned out to be. */
export type ServerFrame =
  | { kind: 'event'; event: SequencedAgentEvent }
  | { kind: 'unknown_event'; type: string; seq: number; threadId: string }
  | { kind: 'ack'; message: AckMessage }
  | { kind: 'error'; message: ErrorMessage }
  | { kind: 'invalid'; reason: string };

/** Largest frame the element reads, in UTF-16 code units: well above the largest legal event. */
export const MAX_FRAME_LENGTH = 256 * 1024;

type Obj = Record<string, unknown>;

const KNOWN_TYPES = new Set<string>(EVENT_TYPES);
const CODE = /^[a-z][a-z0-9_]*$/;
const UNKNOWN_TYPE = /^[A-Z][A-Z0-9_]{0,63}$/;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;
const isId = (v: unknown): v is string => isStr(v, LIMITS.maxIdLength) && ID_PATTERN.test(v);
const isInt = (v: unknown, min: number): v is number => Number.isSafeInteger(v) && (v as number) >= min;
const isCode = (v: unknown): v is string => isStr(v, LIMITS.maxCodeLength) && CODE.test(v);
const opt = (v: unknown, check: (v: unknown) => boolean): boolean => v === undefined || check(v);

/** Names the first field of a known event that breaks the contract, or returns undefined when it is valid. */
function eventProblem(e: Obj): string | undefined {
  if (!isId(e.threadId)) return 'threadId';
  if (!isId(e.runId)) return 'runId';
  if (!isInt(e.ts, 0)) return 'ts';
  if (!isInt(e.seq, 1)) return 'seq';
  switch (e.type) {
    case 'RUN_STARTED':
      if (!opt(e.parentRunId, isId)) return 'parentRunId';
      return opt(e.regenerates, isId) ? undefined : 'regenerates';
    case 'TOOL_APPROVAL_RESOLVED':
      if (!isId(e.toolCallId)) return 'toolCallId';
      return typeof e.approved === 'boolean' ? undefined : 'approved';
    case 'TOOL_CALL_STARTED':
    case 'TOOL_CALL_RESULT':
    case 'TOOL_APPROVAL_REQUESTED':
      if (!isId(e.toolCallId)) return 'toolCallId';
      if (!isStr(e.toolName, LIMITS.maxToolNameLength)) return 'toolName';
      if (!opt(e.label, (v) => isStr(v, LIMITS.maxLabelLength))) return 'label';
      if (e.type === 'TOOL_CALL_STARTED') return undefined;
      if (e.type === 'TOOL_APPROVAL_REQUESTED')
        return typeof e.args === 'string' && e.args.length <= LIMITS.maxDeltaLength ? undefined : 'args';
      if (typeof e.ok !== 'boolean') return 'ok';
      return opt(e.error, (v) => isStr(v, LIMITS.maxErrorMessageLength)) ? undefined : 'error';
    case 'TEXT_MESSAGE_CHUNK':
      if (!isId(e.messageId)) return 'messageId';
      return typeof e.delta === 'string' && e.delta.length <= LIMITS.maxDeltaLength ? undefined : 'delta';
    case 'RUN_ERROR':
      if (!isStr(e.message, LIMITS.maxErrorMessageLength)) return 'message';
      return opt(e.code, isCode) ? undefined : 'code';
    case 'RUN_FINISHED':
      return opt(e.traceId, (v) => isStr(v, LIMITS.maxIdLength)) ? undefined : 'traceId';
    case 'USER_MESSAGE':
      if (!isId(e.messageId)) return 'messageId';
      if (!isId(e.clientMessageId)) return 'clientMessageId';
      if (!isId(e.userId)) return 'userId';
      return isStr(e.text, LIMITS.maxMessageLength) ? undefined : 'text';
    case 'STATE_CHANGED':
      return isStr(e.scope, LIMITS.maxToolNameLength) && 'value' in e ? undefined : 'scope';
    case 'HISTORY_WINDOWED':
      return isInt(e.windowItems, 0) ? undefined : 'windowItems';
    default:
      return 'type';
  }
}

/** Reads one server frame (JSON text) into a {@link ServerFrame}. Never throws. */
export function readServerFrame(text: string): ServerFrame {
  if (typeof text !== 'string') return { kind: 'invalid', reason: 'frame is not text' };
  if (text.length > MAX_FRAME_LENGTH)
    return { kind: 'invalid', reason: `frame longer than ${MAX_FRAME_LENGTH}` };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'invalid', reason: 'frame is not valid JSON' };
  }
  if (!isObj(value)) return { kind: 'invalid', reason: 'frame is not an object' };
  switch (value.type) {
    case 'event': {
      const e = value.event;
      if (!isObj(e) || typeof e.type !== 'string') return { kind: 'invalid', reason: 'event has no type' };
      if (!KNOWN_TYPES.has(e.type)) {
        // Forward compatibility (see parseEventLenient): a well-formed unknown type is skipped, not an error.
        if (UNKNOWN_TYPE.test(e.type) && isInt(e.seq, 1) && isId(e.threadId)) {
          return { kind: 'unknown_event', type: e.type, seq: e.seq, threadId: e.threadId };
        }
        return { kind: 'invalid', reason: 'event has an unusable type' };
      }
      const problem = eventProblem(e);
      if (problem) return { kind: 'invalid', reason: `${e.type} event has an invalid ${problem}` };
      return { kind: 'event', event: e as unknown as SequencedAgentEvent };
    }
    case 'ack':
      if (!isId(value.clientMessageId) || !isId(value.runId))
        return { kind: 'invalid', reason: 'invalid ack' };
      return { kind: 'ack', message: value as unknown as AckMessage };
    case 'error':
      if (
        !isCode(value.code) ||
        !isStr(value.message, LIMITS.maxErrorMessageLength) ||
        !opt(value.ref, isId) ||
        !opt(value.retryAfterMs, (v) => isInt(v, 0) && v <= LIMITS.maxRetryAfterMs)
      ) {
        return { kind: 'invalid', reason: 'invalid error message' };
      }
      return { kind: 'error', message: value as unknown as ErrorMessage };
    default:
      return { kind: 'invalid', reason: 'unknown message type' };
  }
}

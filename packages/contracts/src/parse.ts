import { z } from 'zod';
import { ContractError, type ContractIssue, toContractIssues } from './errors.js';
import { AgentEventSchema, EVENT_TYPES, SequencedAgentEventSchema } from './events.js';
import type { AgentEvent, SequencedAgentEvent } from './events.js';
import { IdSchema, SeqSchema } from './primitives.js';

/** The result of a safe parse: the value, or the issues. Never throws. */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: ContractError };

/** Parses `input` with `schema`; returns a {@link ParseResult} with typed issues instead of throwing. */
export function safeParse<S extends z.ZodType>(
  schema: S,
  input: unknown,
  what = 'value',
): ParseResult<z.infer<S>> {
  let result: ReturnType<S['safeParse']>;
  try {
    result = schema.safeParse(input) as ReturnType<S['safeParse']>;
  } catch (cause) {
    // Exotic inputs (revoked proxies, throwing getters) must still come back as a typed error.
    return {
      ok: false,
      error: new ContractError(
        'invalid_payload',
        `invalid ${what}`,
        [{ path: '', message: 'unreadable value' }],
        { cause },
      ),
    };
  }
  if (result.success) return { ok: true, value: result.data as z.infer<S> };
  const issues = toContractIssues(result.error as z.ZodError);
  return { ok: false, error: new ContractError('invalid_payload', summarize(what, issues), issues) };
}

/** Parses `input` with `schema`, throwing {@link ContractError} on a mismatch. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, what = 'value'): z.infer<S> {
  const r = safeParse(schema, input, what);
  if (!r.ok) throw r.error;
  return r.value;
}

/** Parses a JSON text, then validates it. Bad JSON is a {@link ContractError} with code `invalid_json`. */
export function safeParseJson<S extends z.ZodType>(
  schema: S,
  text: string,
  what = 'value',
): ParseResult<z.infer<S>> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return {
      ok: false,
      error: new ContractError('invalid_json', `${what} is not valid JSON`, [
        { path: '', message: 'not valid JSON' },
      ]),
    };
  }
  return safeParse(schema, value, what);
}

function summarize(what: string, issues: ContractIssue[]): string {
  const first = issues[0];
  if (!first) return `invalid ${what}`;
  const where = first.path === '' ? '' : ` at ${first.path}`;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return `invalid ${what}: ${first.message}${where}${more}`;
}

/** Parses a contract event (without `seq`). Throws {@link ContractError}. */
export function parseEvent(input: unknown): AgentEvent {
  return parseWith(AgentEventSchema, input, 'event');
}

/** Parses a sequenced event (as stored and sent to browsers). Throws {@link ContractError}. */
export function parseSequencedEvent(input: unknown): SequencedAgentEvent {
  return parseWith(SequencedAgentEventSchema, input, 'event');
}

/**
 * An event of a type this version does not know, kept as it came so it can be passed on or ignored. Its
 * envelope is still checked: `threadId` always, and `seq` when parsed as sequenced, so a consumer can file it
 * under the right thread and advance its resume position past it.
 */
export interface UnknownEvent {
  kind: 'unknown';
  type: string;
  threadId: string;
  /** Present when parsed with `{ sequenced: true }`. */
  seq?: number;
  raw: Record<string, unknown>;
}

/** Result of {@link parseEventLenient}. */
export type LenientEvent<E> = { kind: 'known'; event: E } | UnknownEvent;

const KNOWN = new Set<string>(EVENT_TYPES);
// Only the envelope every event shares; the rest of an unknown event is the newer server's business.
const UnknownEnvelopeSchema = z.looseObject({ threadId: IdSchema });
const UnknownSequencedEnvelopeSchema = z.looseObject({ threadId: IdSchema, seq: SeqSchema });

/**
 * Forward-compatible parse for consumers: an event whose `type` this version does not know is returned
 * as `{kind: 'unknown'}` instead of failing, so an old browser keeps working against a newer server.
 * A known type that is malformed is still an error.
 *
 * @example
 * const r = parseEventLenient(JSON.parse(line), { sequenced: true });
 * if (r.kind === 'known') render(r.event);
 */
export function parseEventLenient(
  input: unknown,
  options: { sequenced: true },
): LenientEvent<SequencedAgentEvent>;
/** Forward-compatible parse of an event without `seq` (see the sequenced overload). */
export function parseEventLenient(input: unknown, options?: { sequenced?: false }): LenientEvent<AgentEvent>;
export function parseEventLenient(
  input: unknown,
  options: { sequenced?: boolean } = {},
): LenientEvent<AgentEvent | SequencedAgentEvent> {
  if (
    typeof input === 'object' &&
    input !== null &&
    !Array.isArray(input) &&
    typeof (input as { type?: unknown }).type === 'string' &&
    !KNOWN.has((input as { type: string }).type)
  ) {
    const type = (input as { type: string }).type;
    if (/^[A-Z][A-Z0-9_]{0,63}$/.test(type)) {
      const raw = input as Record<string, unknown>;
      if (options.sequenced) {
        const envelope = parseWith(UnknownSequencedEnvelopeSchema, input, `${type} event`);
        return { kind: 'unknown', type, threadId: envelope.threadId, seq: envelope.seq, raw };
      }
      const envelope = parseWith(UnknownEnvelopeSchema, input, `${type} event`);
      return { kind: 'unknown', type, threadId: envelope.threadId, raw };
    }
  }
  const event = options.sequenced ? parseSequencedEvent(input) : parseEvent(input);
  return { kind: 'known', event };
}

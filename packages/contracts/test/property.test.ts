import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AgentEventSchema,
  ClientMessageSchema,
  ContractError,
  LIMITS,
  RunRequestSchema,
  SequencedAgentEventSchema,
  safeParse,
  safeParseJson,
} from '../src/index.js';

const idChars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-'.split('');
const id = fc
  .array(fc.constantFrom(...idChars), { minLength: 1, maxLength: LIMITS.maxIdLength })
  .map((a) => a.join(''));
const toolName = fc
  .tuple(
    fc.constantFrom(...'abcXYZ'.split('')),
    fc.array(fc.constantFrom(...'abz09._-'.split('')), { maxLength: 20 }),
  )
  .map(([h, t]) => h + t.join(''));
const code = fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/);
const text = (max: number) => fc.string({ unit: 'grapheme', maxLength: Math.min(max, 200) });
const nonEmpty = (max: number) =>
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: Math.min(max, 200) });
const ts = fc.integer({ min: 0, max: 4_102_444_800_000 });
const jsonValue = fc
  .jsonValue({ maxDepth: 4 })
  .filter((v) => !JSON.stringify(v).match(/"(__proto__|constructor|prototype)"/));
const base = { threadId: id, runId: id, ts };

const event = fc.oneof(
  fc.record(
    { type: fc.constant('RUN_STARTED'), ...base, parentRunId: id },
    { requiredKeys: ['type', 'threadId', 'runId', 'ts'] },
  ),
  fc.record(
    {
      type: fc.constant('TOOL_CALL_STARTED'),
      ...base,
      toolCallId: id,
      toolName,
      label: nonEmpty(LIMITS.maxLabelLength),
    },
    { requiredKeys: ['type', 'threadId', 'runId', 'ts', 'toolCallId', 'toolName'] },
  ),
  fc.record(
    {
      type: fc.constant('TOOL_CALL_RESULT'),
      ...base,
      toolCallId: id,
      toolName,
      ok: fc.boolean(),
      error: nonEmpty(500),
    },
    { requiredKeys: ['type', 'threadId', 'runId', 'ts', 'toolCallId', 'toolName', 'ok'] },
  ),
  fc.record({
    type: fc.constant('TEXT_MESSAGE_CHUNK'),
    ...base,
    messageId: id,
    delta: text(LIMITS.maxDeltaLength),
  }),
  fc.record(
    { type: fc.constant('RUN_ERROR'), ...base, message: nonEmpty(500), code },
    { requiredKeys: ['type', 'threadId', 'runId', 'ts', 'message'] },
  ),
  fc.record(
    { type: fc.constant('RUN_FINISHED'), ...base, traceId: id },
    { requiredKeys: ['type', 'threadId', 'runId', 'ts'] },
  ),
  fc.record({
    type: fc.constant('USER_MESSAGE'),
    ...base,
    messageId: id,
    clientMessageId: id,
    userId: id,
    text: nonEmpty(LIMITS.maxMessageLength),
  }),
  fc.record({ type: fc.constant('STATE_CHANGED'), ...base, scope: toolName, value: jsonValue }),
  fc.record({
    type: fc.constant('HISTORY_WINDOWED'),
    ...base,
    windowItems: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  }),
);

describe('property: round trips', () => {
  it('random valid events survive JSON and parse back equal', () => {
    fc.assert(
      fc.property(event, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (e, seq) => {
        // What a receiver gets is the JSON image of the event (e.g. -0 travels as 0): parsing must return
        // exactly that, unchanged.
        const wire = JSON.parse(JSON.stringify(e)) as unknown;
        const back = safeParseJson(AgentEventSchema, JSON.stringify(e));
        expect(back).toEqual({ ok: true, value: wire });
        const sequenced = safeParseJson(SequencedAgentEventSchema, JSON.stringify({ ...e, seq }));
        expect(sequenced).toEqual({ ok: true, value: { ...(wire as object), seq } });
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('property: junk', () => {
  const schemas = [AgentEventSchema, SequencedAgentEventSchema, ClientMessageSchema, RunRequestSchema];
  it('random values never throw, and failures are typed ContractErrors', () => {
    fc.assert(
      fc.property(
        fc.anything({
          withBigInt: true,
          withDate: true,
          withMap: true,
          withSet: true,
          withTypedArray: true,
          withNullPrototype: true,
          withSparseArray: true,
        }),
        (junk) => {
          for (const schema of schemas) {
            const r = safeParse(schema, junk);
            if (!r.ok) {
              expect(r.error).toBeInstanceOf(ContractError);
              expect(r.error.issues.length).toBeGreaterThan(0);
            }
          }
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('random mutations of valid events are either valid or typed errors', () => {
    fc.assert(
      fc.property(event, fc.string(), fc.anything(), (e, key, value) => {
        const mutated = { ...e, [key]: value };
        const r = safeParse(AgentEventSchema, mutated);
        if (!r.ok) expect(r.error).toBeInstanceOf(ContractError);
      }),
      { numRuns: 2_000 },
    );
  });

  it('random strings as JSON text never throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        const r = safeParseJson(ClientMessageSchema, s);
        if (!r.ok) expect(['invalid_json', 'invalid_payload']).toContain(r.error.code);
      }),
      { numRuns: 2_000 },
    );
  });
});

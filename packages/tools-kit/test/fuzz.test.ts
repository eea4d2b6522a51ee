import { EVENT_TYPES, TOOL_ERROR_STATUS, ToolResultSchema } from '@threadline/contracts';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool } from '../src/index.js';
import { makeSetup, serveExpress } from './helpers.js';

/**
 * Property-based fuzzing of request bodies, headers and query strings against every tool. Invariants:
 * no 5xx, every answer is a valid envelope whose status matches its code, and a refused request changes
 * neither the store nor the event log. Runs: 3,600 body + 1,600 query in process, 400 over HTTP = 5,600.
 */
const book = defineTool({
  name: 'calendar.book',
  description: 'Book a slot.',
  input: z.strictObject({
    slot: z.string().min(1).max(20),
    attendees: z
      .array(z.strictObject({ email: z.email() }))
      .max(5)
      .optional(),
  }),
  output: z.strictObject({ booked: z.string() }),
  handler: ({ slot }) => ({ booked: slot }),
});
const setup = makeSetup({ tools: [book] });
const { router, store, sink, mint } = setup;
const names = router.toolNames;
let tokens: { valid: string; otherThread: string; fewTools: string; expiredish: string };

beforeAll(async () => {
  tokens = {
    valid: await mint(),
    otherThread: await mint({ threadId: 't2' }),
    fewTools: await mint({ tools: ['state.get'] }),
    expiredish: (await mint()).slice(0, -3) + 'AAA',
  };
  await store.patchProfile('u2', { displayName: 'Bob' });
  await store.addSessionItems('t2', ['b']);
});

const anyText = fc.string({ unit: 'binary', maxLength: 40 });
const id = fc.oneof(fc.constantFrom('t1', 't2', '', 'a'.repeat(129), 't1 ', '../t1'), anyText);
const inputFor = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.record({ items: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }) }, { requiredKeys: [] }),
  fc.record({ limit: fc.oneof(fc.integer(), fc.double(), anyText) }, { requiredKeys: [] }),
  fc.record(
    {
      displayName: fc.oneof(anyText, fc.constant(null), fc.integer()),
      locale: fc.oneof(fc.constantFrom('en', 'pt-BR', 'xx-'), anyText),
      timezone: fc.oneof(fc.constantFrom('Europe/Paris', 'UTC'), anyText),
      unset: fc.array(fc.oneof(fc.constantFrom('displayName', 'locale', 'timezone'), anyText), {
        maxLength: 3,
      }),
      extra: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: [] },
  ),
  fc.record({
    event: fc.record(
      {
        type: fc.oneof(fc.constantFrom(...EVENT_TYPES), anyText),
        scope: fc.oneof(fc.constantFrom('profile', 'cart'), anyText),
        value: fc.jsonValue({ maxDepth: 2 }),
        threadId: id,
        runId: fc.constantFrom('r1', 'r2'),
        ts: fc.oneof(fc.nat(), fc.double()),
        messageId: fc.constantFrom('m1'),
        delta: anyText,
      },
      { requiredKeys: [] },
    ),
  }),
  fc.record(
    {
      slot: anyText,
      attendees: fc.array(fc.record({ email: fc.oneof(fc.emailAddress(), anyText) }), { maxLength: 6 }),
    },
    { requiredKeys: [] },
  ),
);
const body = fc.oneof(
  { weight: 1, arbitrary: anyText },
  { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
  {
    weight: 6,
    arbitrary: fc
      .record(
        {
          threadId: fc.oneof({ weight: 4, arbitrary: fc.constant('t1') }, { weight: 1, arbitrary: id }),
          input: inputFor,
          idempotencyKey: fc.oneof(fc.constantFrom('k1', 'k2'), anyText),
          junk: fc.jsonValue({ maxDepth: 1 }),
        },
        { requiredKeys: [] },
      )
      .map((b) => JSON.stringify(b)),
  },
);
const toolName = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...names) },
  { weight: 1, arbitrary: anyText },
  { weight: 1, arbitrary: fc.constantFrom('no.such', '..', 'session.get/x', '%2e%2e') },
);

/** Mostly valid inputs per tool, so the fuzzer also drives the handlers and their writes. */
const plausible: Record<string, fc.Arbitrary<unknown>> = {
  'session.get': fc.record({ limit: fc.integer({ min: 1, max: 1000 }) }, { requiredKeys: [] }),
  'session.add': fc.record({ items: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }) }),
  'profile.patch': fc.record(
    {
      displayName: fc.string({ minLength: 1, maxLength: 80 }).filter((v) => v.trim().length > 0),
      locale: fc.constantFrom('en', 'pt-BR', 'fr'),
      timezone: fc.constantFrom('UTC', 'Europe/Paris'),
      unset: fc.subarray(['locale', 'timezone']),
    },
    { requiredKeys: [] },
  ),
  'events.append': fc.record({
    event: fc.record(
      {
        type: fc.constantFrom(
          'STATE_CHANGED',
          'STATE_CHANGED',
          'STATE_CHANGED',
          'RUN_FINISHED',
          'USER_MESSAGE',
        ),
        scope: fc.constantFrom('profile', 'cart'),
        value: fc.jsonValue({ maxDepth: 2 }),
        runId: fc.constantFrom('r1', 'r2'),
      },
      { requiredKeys: ['type', 'scope', 'value'] },
    ),
  }),
  'calendar.book': fc.record(
    {
      slot: fc.string({ minLength: 1, maxLength: 20 }),
      attendees: fc.array(fc.record({ email: fc.emailAddress() }), { maxLength: 5 }),
    },
    { requiredKeys: ['slot'] },
  ),
};
const wellFormed = fc
  .constantFrom(...names)
  .chain((name) =>
    (plausible[name] ?? fc.constant({})).map(
      (input) => [name, JSON.stringify({ threadId: 't1', input })] as const,
    ),
  );
const call = fc
  .oneof({ weight: 3, arbitrary: wellFormed }, { weight: 4, arbitrary: fc.tuple(fc.constant(''), body) })
  .chain(([name, raw]) =>
    name === '' ? fc.tuple(toolName, fc.constant(raw)) : fc.constant([name, raw] as const),
  );

const token = fc.oneof(
  { weight: 8, arbitrary: fc.constant('valid' as const) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('otherThread' as const, 'fewTools' as const, 'expiredish' as const),
  },
  { weight: 1, arbitrary: anyText.map((t) => ({ raw: t })) },
);
const header = (t: 'valid' | 'otherThread' | 'fewTools' | 'expiredish' | { raw: string }) =>
  typeof t === 'string' ? `Bearer ${tokens[t]}` : t.raw;
const idempotencyKey = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constantFrom('k1', 'k2') },
  { weight: 1, arbitrary: anyText },
);
const contentType = fc.constantFrom(
  undefined,
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
);

function safeHeaders(entries: [string, string | undefined][]): Headers {
  const headers = new Headers();
  for (const [k, v] of entries) {
    if (v === undefined) continue;
    try {
      headers.set(k, v);
    } catch {
      // Values a real client could not send either (e.g. control characters) are left out.
    }
  }
  return headers;
}

/** Outcomes seen, so a test can prove the fuzzer reached both the success paths and each refusal. */
const seen = new Map<string, number>();

async function check(response: Response, before: ReturnType<typeof store.snapshot>, eventsBefore: number) {
  expect(response.status).toBeLessThan(500);
  const parsed = ToolResultSchema.safeParse(await response.json());
  expect(parsed.success).toBe(true);
  if (!parsed.success) return;
  const outcome = parsed.data.ok ? 'ok' : parsed.data.error.code;
  seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
  if (parsed.data.ok) {
    expect(response.status).toBe(200);
  } else {
    expect(response.status).toBe(TOOL_ERROR_STATUS[parsed.data.error.code as keyof typeof TOOL_ERROR_STATUS]);
    expect(store.snapshot()).toEqual(before);
    expect(sink.events.length).toBe(eventsBefore);
  }
  // Keep the store small so snapshots stay cheap; this runs after the invariants were checked.
  if ((await store.getSessionItems('t1')).length > 100) await store.clearSession('t1');
  if (sink.events.length > 500) sink.events.length = 0;
}

describe('fuzzing', () => {
  it('POST /tools/:name: random names, tokens, headers and bodies never 5xx and never write on refusal', async () => {
    await fc.assert(
      fc.asyncProperty(call, token, contentType, idempotencyKey, async ([name, raw], tok, ct, idem) => {
        const before = store.snapshot();
        const eventsBefore = sink.events.length;
        let url: string;
        try {
          url = new URL(`http://x/tools/${encodeURIComponent(name)}`).href;
        } catch {
          return;
        }
        const res = await router(
          new Request(url, {
            method: 'POST',
            headers: safeHeaders([
              ['authorization', header(tok)],
              ['content-type', ct],
              ['idempotency-key', idem],
            ]),
            body: raw,
          }),
        );
        await check(res, before, eventsBefore);
      }),
      { numRuns: 3600 },
    );
    // The generators must reach the handlers, not only the front door.
    expect(seen.get('ok') ?? 0).toBeGreaterThan(200);
    for (const code of [
      'invalid_input',
      'invalid_json',
      'token_invalid',
      'thread_mismatch',
      'tool_not_allowed',
      'not_found',
      'unsupported_media_type',
      'forbidden',
    ]) {
      expect([code, seen.get(code) ?? 0]).not.toEqual([code, 0]);
    }
  });

  it('GET /state and GET /tools: random query strings never 5xx and never write', async () => {
    const query = fc.oneof(
      anyText.map((q) => `?${encodeURI(q)}`),
      fc
        .array(fc.tuple(fc.constantFrom('threadId', 'threadid', 'limit', ''), id), { maxLength: 3 })
        .map((pairs) => `?${new URLSearchParams(pairs).toString()}`),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/state', '/tools', '/tools/', '/state/'),
        query,
        token,
        async (path, q, tok) => {
          const before = store.snapshot();
          const eventsBefore = sink.events.length;
          let url: string;
          try {
            url = new URL(`http://x${path}${q}`).href;
          } catch {
            return;
          }
          const res = await router(
            new Request(url, { headers: safeHeaders([['authorization', header(tok)]]) }),
          );
          await check(res, before, eventsBefore);
          // Reads never write, whatever they answer.
          expect(store.snapshot()).toEqual(before);
        },
      ),
      { numRuns: 1600 },
    );
  });

  describe('over HTTP through the Express adapter', () => {
    let server: { url: string; close(): Promise<void> };
    beforeAll(async () => {
      server = await serveExpress(router);
    });
    afterAll(() => server.close());

    it('random bodies over a real socket never 5xx and never write on refusal', async () => {
      // A real HTTP client refuses control characters in headers, so raw tokens are kept printable here.
      const printableToken = token.map((t) =>
        typeof t === 'string' ? t : { raw: t.raw.replace(/[^\x20-\x7e]/g, '') },
      );
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...names),
          printableToken,
          body,
          contentType,
          async (name, tok, raw, ct) => {
            const before = store.snapshot();
            const eventsBefore = sink.events.length;
            const res = await fetch(`${server.url}/tools/${encodeURIComponent(name)}`, {
              method: 'POST',
              headers: safeHeaders([
                ['authorization', header(tok)],
                ['content-type', ct],
              ]),
              body: raw,
            });
            await check(res, before, eventsBefore);
          },
        ),
        { numRuns: 400 },
      );
    });
  });
});

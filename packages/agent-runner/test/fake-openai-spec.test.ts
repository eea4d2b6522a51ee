// The fake OpenAI server against the official OpenAPI description (schemas vendored in
// fixtures/openai-openapi-schemas.json by scripts/extract-openai-schemas.mjs): every stream event, chunk and
// response object it sends, for every kind of scripted turn, must validate, and the event sequences must be the
// API's (sequence numbers, item lifecycle, deltas that add up to the final text).
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createParser } from 'eventsource-parser';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import {
  FAKE_COMPACTION_PREFIX,
  createFakeOpenAIServer,
  type FakeOpenAIServer,
  type FakeTurn,
} from '../src/testing.js';

type Json = Record<string, unknown>;
interface Fixture {
  source: { repository: string; commit: string; roots: string[] };
  schema: { $id: string; $defs: Record<string, Json> };
}

const fixture = JSON.parse(
  readFileSync(new URL('./fixtures/openai-openapi-schemas.json', import.meta.url), 'utf8'),
) as Fixture;

/**
 * A copy of the schemas in which every object schema also refuses properties the description does not name
 * (`unevaluatedProperties: false`), so the fake cannot send invented or misspelled fields. Schemas used as
 * `allOf` members are left open: the closing happens on the schema that composes them.
 */
function closeObjects(schema: Fixture['schema']): Fixture['schema'] {
  const copy = structuredClone(schema);
  const composed = new Set<unknown>();
  const composedDefs = new Set<string>();
  const mark = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(mark);
    if (!node || typeof node !== 'object') return;
    const obj = node as Json;
    if (Array.isArray(obj.allOf))
      for (const member of obj.allOf as Json[]) {
        composed.add(member);
        if (typeof member.$ref === 'string') composedDefs.add(member.$ref.replace('#/$defs/', ''));
      }
    Object.values(obj).forEach(mark);
  };
  mark(copy.$defs);
  for (const name of composedDefs) composed.add(copy.$defs[name]);
  const close = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(close);
    if (!node || typeof node !== 'object') return;
    const obj = node as Json;
    const closable = (obj.properties !== undefined || obj.allOf !== undefined) && !composed.has(obj);
    if (closable && !('additionalProperties' in obj) && !('unevaluatedProperties' in obj))
      obj.unevaluatedProperties = false;
    for (const [key, value] of Object.entries(obj))
      if (key === 'properties') Object.values(value as Json).forEach(close);
      else close(value);
  };
  close(copy.$defs);
  return { ...copy, $id: `${copy.$id}#closed`.replace('#closed', '-closed') };
}

// Strict mode, except `strictRequired` (a `required` name defined in a sibling `allOf` member is fine), and for
// the closed copy `strictTypes` (`unevaluatedProperties` on a composed schema without its own `type`).
const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
ajv.addSchema(fixture.schema);
const closed = closeObjects(fixture.schema);
const ajvClosed = new Ajv2020({ strict: true, strictRequired: false, strictTypes: false, allErrors: true });
ajvClosed.addSchema(closed);
// Compiled up front (a few seconds for the Response closure), outside any test's timeout.
const compiled = new Map(
  fixture.source.roots.map((name) => {
    const open = ajv.getSchema(`${fixture.schema.$id}#/$defs/${name}`);
    const strict = ajvClosed.getSchema(`${closed.$id}#/$defs/${name}`);
    if (!open || !strict) throw new Error(`no schema ${name} in the fixture`);
    return [name, [open, strict] as const];
  }),
);
const validators = (name: string) => {
  const pair = compiled.get(name);
  if (!pair) throw new Error(`${name} is not a root of the fixture`);
  return pair;
};
/** Responses stream event type → the schema that defines it. */
const eventSchemas = new Map(
  fixture.source.roots
    .filter((name) => name.endsWith('Event'))
    .map((name) => {
      const type = (fixture.schema.$defs[name]!.properties as Json).type as { enum: string[] };
      return [type.enum[0]!, name] as const;
    }),
);

let validated = 0;
const validatedByKind = new Map<string, number>();
/** Validates one payload against a schema of the description, open and closed; fails the test with ajv's errors. */
function expectValid(name: string, payload: unknown) {
  for (const validate of validators(name)) {
    if (!validate(payload))
      expect.fail(
        `${name} does not match the spec: ${JSON.stringify(validate.errors?.slice(0, 5))}\n${JSON.stringify(payload).slice(0, 2000)}`,
      );
  }
  validated++;
  validatedByKind.set(name, (validatedByKind.get(name) ?? 0) + 1);
}
function expectValidEvent(event: Json) {
  const schema = eventSchemas.get(String(event.type));
  if (!schema) expect.fail(`event type ${String(event.type)} is not one the fixture covers`);
  expectValid(schema, event);
}

// A fresh server per test: turns a failed test left unanswered cannot leak into the next one.
let fake: FakeOpenAIServer;
beforeEach(async () => {
  fake = await createFakeOpenAIServer();
});
afterEach(async () => {
  await expect.poll(() => fake.openStreams()).toBe(0);
  await fake.close();
});
afterAll(() => {
  console.log(
    `fake OpenAI server: ${validated} payloads validated against openai-openapi@${fixture.source.commit.slice(0, 12)}`,
    Object.fromEntries(validatedByKind),
  );
});

/** Calls the fake over plain HTTP: parsed SSE `data` payloads (with their `event:` names), or the JSON body. */
async function call(
  path: 'responses' | 'responses/compact' | 'chat/completions',
  body: Json,
  turn?: FakeTurn,
) {
  if (turn) fake.enqueue(turn);
  const res = await fetch(`${fake.baseURL}/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.headers.get('content-type')?.startsWith('text/event-stream'))
    return { status: res.status, json: (await res.json()) as Json, events: [], done: false };
  const events: Json[] = [];
  let done = false;
  const parser = createParser({
    onEvent(message) {
      if (message.data === '[DONE]') return void (done = true);
      expect(done).toBe(false);
      const data = JSON.parse(message.data) as Json;
      if (message.event !== undefined) expect(message.event).toBe(data.type);
      events.push(data);
    },
  });
  for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) parser.feed(chunk);
  return { status: res.status, json: undefined, events, done };
}

/** Validates a Responses stream and checks its sequence; returns its terminal response (or error event). */
function checkResponsesStream(events: Json[]) {
  events.forEach(expectValidEvent);
  expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
  expect(events.slice(0, 2).map((e) => e.type)).toEqual(['response.created', 'response.in_progress']);
  const terminal = events.at(-1)!;
  const terminalTypes = ['response.completed', 'response.failed', 'response.incomplete', 'error'];
  expect(terminalTypes).toContain(terminal.type);
  expect(events.filter((e) => terminalTypes.includes(String(e.type)))).toHaveLength(1);
  const ids = new Set(events.filter((e) => isResponseEvent(e)).map((e) => (e.response as Json).id));
  expect(ids.size).toBe(1);

  // Per output item: added, then its deltas, then the done events whose text / arguments the deltas add up to.
  const items = new Map<number, { item: Json; text: string; args: string; done?: Json }>();
  for (const e of events) {
    const index = e.output_index as number | undefined;
    if (index === undefined) continue;
    if (e.type === 'response.output_item.added') {
      expect(items.has(index)).toBe(false);
      items.set(index, { item: e.item as Json, text: '', args: '' });
      continue;
    }
    const entry = items.get(index);
    if (!entry) expect.fail(`${String(e.type)} for output ${index} before its output_item.added`);
    expect(entry.done).toBeUndefined();
    if ('item_id' in e) expect(e.item_id).toBe(entry.item.id);
    if (e.type === 'response.output_text.delta') {
      expect(e.logprobs).toEqual([]);
      entry.text += e.delta as string;
    }
    if (e.type === 'response.output_text.done') expect(e.text).toBe(entry.text);
    if (e.type === 'response.content_part.done') expect((e.part as Json).text).toBe(entry.text);
    if (e.type === 'response.function_call_arguments.delta') entry.args += e.delta as string;
    if (e.type === 'response.function_call_arguments.done') expect(e.arguments).toBe(entry.args);
    if (e.type === 'response.output_item.done') entry.done = e.item as Json;
  }
  if (terminal.type === 'response.completed' || terminal.type === 'response.incomplete') {
    const output = (terminal.response as Json).output as Json[];
    expect(output).toEqual([...items.keys()].sort().map((i) => items.get(i)!.done));
  }
  return terminal;
}
const isResponseEvent = (e: Json) => typeof e.response === 'object' && e.response !== null;
const typesOf = (events: Json[]) =>
  events.map((e) => e.type).filter((t, i, all) => !(String(t).endsWith('.delta') && all[i - 1] === t));

/** Validates a Chat Completions stream: every chunk, or the error payload that ends it. */
function checkChatStream(events: Json[], done: boolean) {
  const chunks = events.filter((e) => !('error' in e));
  for (const c of chunks) expectValid('CreateChatCompletionStreamResponse', c);
  for (const e of events.filter((e) => 'error' in e)) expectValid('ErrorResponse', e);
  expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  const deltas = chunks.flatMap((c) => (c.choices as Json[]).map((ch) => ch.delta as Json));
  const content = deltas.map((d) => (typeof d.content === 'string' ? d.content : '')).join('');
  const args = new Map<number, string>();
  for (const d of deltas)
    for (const tc of (d.tool_calls as Json[] | undefined) ?? [])
      args.set(
        tc.index as number,
        (args.get(tc.index as number) ?? '') + ((tc.function as Json).arguments ?? ''),
      );
  const finish = chunks.flatMap((c) => (c.choices as Json[]).map((ch) => ch.finish_reason)).filter(Boolean);
  return { content, args: [...args.values()], finish, errored: chunks.length < events.length, done };
}

const MODEL = 'gpt-4.1-mini';
const TEXT = 'Hello there, Ada! Ünïcödé and emoji 🎉 split across deltas.';
const CALLS = [
  { name: 'get_weather', arguments: { city: 'Paris', units: 'metric' }, callId: 'call_w' },
  { name: 'lookup', arguments: '{"q":"x"}' },
];

describe('Responses API events and objects validate against the OpenAPI description', () => {
  const body = { model: MODEL, input: 'hi', stream: true };

  it('text: created, in_progress, item and part added, deltas, text/part/item done, completed', async () => {
    const { events } = await call('responses', body, { type: 'text', text: TEXT, chunkSize: 5 });
    const terminal = checkResponsesStream(events);
    expect(typesOf(events)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.filter((e) => e.type === 'response.output_text.delta')).toHaveLength(
      Math.ceil(TEXT.length / 5),
    );
    const response = terminal.response as Json;
    expect(response).toMatchObject({ status: 'completed', model: MODEL, error: null });
    expect((response.output as Json[])[0]).toMatchObject({ type: 'message', status: 'completed' });
  });

  it('tool calls: text, then each call with streamed arguments', async () => {
    const { events } = await call('responses', body, {
      type: 'tool_call',
      text: 'Let me check.',
      calls: CALLS,
      chunkSize: 4,
    });
    const terminal = checkResponsesStream(events);
    const oneCall = [
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
    ];
    expect(typesOf(events).slice(8)).toEqual([...oneCall, ...oneCall, 'response.completed']);
    const output = (terminal.response as Json).output as Json[];
    expect(output.map((o) => o.type)).toEqual(['message', 'function_call', 'function_call']);
    expect(output[1]).toMatchObject({ call_id: 'call_w', arguments: JSON.stringify(CALLS[0]!.arguments) });
    expect(output[2]).toMatchObject({ name: 'lookup', arguments: '{"q":"x"}', status: 'completed' });
  });

  it('a call without text and with empty arguments', async () => {
    const { events } = await call('responses', body, {
      type: 'tool_call',
      calls: [{ name: 'now', arguments: '' }],
    });
    checkResponsesStream(events);
    expect(typesOf(events)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
  });

  for (const reason of ['max_output_tokens', 'content_filter'] as const)
    it(`incomplete (${reason}): the message ends incomplete, then response.incomplete`, async () => {
      const { events } = await call('responses', body, { type: 'incomplete', text: 'Half an ans', reason });
      const terminal = checkResponsesStream(events);
      expect(terminal.type).toBe('response.incomplete');
      expect(terminal.response).toMatchObject({ status: 'incomplete', incomplete_details: { reason } });
      expect(((terminal.response as Json).output as Json[])[0]).toMatchObject({ status: 'incomplete' });
    });

  for (const textBefore of ['partial', undefined])
    it(`response.failed ${textBefore ? 'after some text' : 'before any output'}`, async () => {
      const turn: FakeTurn = {
        type: 'response_failed',
        message: 'went wrong',
        ...(textBefore ? { textBefore } : {}),
      };
      const { events } = await call('responses', body, turn);
      const terminal = checkResponsesStream(events);
      expect(terminal.type).toBe('response.failed');
      expect(terminal.response).toMatchObject({
        status: 'failed',
        error: { code: 'server_error', message: 'went wrong' },
      });
      expect(((terminal.response as Json).output as Json[]).length).toBe(textBefore ? 1 : 0);
    });

  it('an error event ends a broken stream', async () => {
    const { events } = await call('responses', body, {
      type: 'stream_error',
      message: 'overloaded',
      code: 'rate_limit_exceeded',
      textBefore: 'abc',
    });
    const terminal = checkResponsesStream(events);
    expect(terminal).toMatchObject({
      type: 'error',
      code: 'rate_limit_exceeded',
      message: 'overloaded',
      param: null,
    });
  });

  it('non-streaming requests get the response object, whatever its status', async () => {
    const cases: [FakeTurn, Json][] = [
      [{ type: 'text', text: TEXT }, { status: 'completed' }],
      [{ type: 'tool_call', calls: CALLS }, { status: 'completed' }],
      [
        { type: 'incomplete', text: 'Hal' },
        { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } },
      ],
      [
        { type: 'response_failed', message: 'no' },
        { status: 'failed', error: { code: 'server_error', message: 'no' } },
      ],
    ];
    for (const [turn, expected] of cases) {
      const { status, json } = await call('responses', { model: MODEL, input: 'hi' }, turn);
      expect(status).toBe(200);
      expectValid('Response', json);
      expect(json).toMatchObject(expected);
    }
  });

  it('errors answer with the ErrorResponse body', async () => {
    for (const [turn, expected] of [
      [{ type: 'http_error', status: 429, message: 'slow down' }, 429],
      [{ type: 'http_error', status: 500 }, 500],
      [{ type: 'stream_error', message: 'gone' }, 500],
    ] as [FakeTurn, number][]) {
      const { status, json } = await call('responses', { model: MODEL, input: 'hi' }, turn);
      expect(status).toBe(expected);
      expectValid('ErrorResponse', json);
    }
    const { status, json } = await call('responses', { model: MODEL, input: 'hi' });
    expect(status).toBe(500);
    expectValid('ErrorResponse', json);
  });

  it('compact: the openai client request and the CompactResource answer validate; user messages kept, one compaction item', async () => {
    const client = new OpenAI({ apiKey: 'sk-test', baseURL: fake.baseURL, maxRetries: 0 });
    const input = [
      { role: 'user' as const, content: 'Plan a picnic.' },
      {
        type: 'message' as const,
        id: 'msg_1',
        status: 'completed' as const,
        role: 'assistant' as const,
        content: [{ type: 'output_text' as const, text: 'Bring bread.', annotations: [], logprobs: [] }],
      },
      { type: 'function_call' as const, call_id: 'c1', name: 'weather', arguments: '{}' },
      { type: 'function_call_output' as const, call_id: 'c1', output: 'sunny' },
      // (A typed user message with input_text parts matches two of the spec's InputItem members at once.)
      { role: 'user' as const, content: 'And drinks?' },
    ];
    const compacted = await client.responses.compact({ model: MODEL, input });
    expectValid('CompactResponseMethodPublicBody', fake.compactRequests[0]!.body);
    const { status, json } = await call('responses/compact', { model: MODEL, input });
    expect(status).toBe(200);
    expectValid('CompactResource', json);
    expect(compacted.object).toBe('response.compaction');
    expect(compacted.output.map((o) => o.type)).toEqual(['message', 'message', 'compaction']);
    expect(compacted.output.at(-1)).toMatchObject({
      type: 'compaction',
      encrypted_content: `${FAKE_COMPACTION_PREFIX}3`,
    });
    expect(compacted.output[1]).toMatchObject({
      role: 'user',
      content: [{ type: 'input_text', text: 'And drinks?' }],
    });

    // Without input items there is nothing the fake could compact: an ErrorResponse, never a crash.
    const bad = await call('responses/compact', { model: MODEL, previous_response_id: 'resp_1' });
    expect(bad.status).toBe(400);
    expectValid('ErrorResponse', bad.json);
  });

  it('echoes the request settings the way the API does (tools, tool_choice, instructions, metadata)', async () => {
    const request = {
      model: MODEL,
      input: [{ role: 'user', content: 'hi' }],
      instructions: 'be brief',
      tools: [
        {
          type: 'function',
          name: 'f',
          description: 'd',
          parameters: { type: 'object', properties: {} },
          strict: true,
        },
        { type: 'function', name: 'g' },
      ],
      tool_choice: { type: 'function', name: 'f' },
      parallel_tool_calls: false,
      temperature: 0.2,
      top_p: 0.5,
      max_output_tokens: 100,
      metadata: { thread: 't1' },
    };
    const streamed = await call('responses', { ...request, stream: true }, { type: 'text', text: 'ok' });
    const terminal = checkResponsesStream(streamed.events);
    const plain = await call('responses', request, { type: 'text', text: 'ok' });
    expectValid('Response', plain.json);
    for (const response of [terminal.response as Json, plain.json!])
      expect(response).toMatchObject({
        instructions: 'be brief',
        tool_choice: { type: 'function', name: 'f' },
        tools: [
          { type: 'function', name: 'f', strict: true },
          { type: 'function', name: 'g', description: null, parameters: null, strict: null },
        ],
        parallel_tool_calls: false,
        temperature: 0.2,
        top_p: 0.5,
        max_output_tokens: 100,
        metadata: { thread: 't1' },
      });
  });
});

describe('Chat Completions chunks and objects validate against the OpenAPI description', () => {
  const body = { model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true };
  const withUsage = { ...body, stream_options: { include_usage: true } };

  it('text, with and without the usage chunk', async () => {
    for (const request of [body, withUsage]) {
      const { events, done } = await call('chat/completions', request, {
        type: 'text',
        text: TEXT,
        chunkSize: 3,
      });
      const r = checkChatStream(events, done);
      expect(r).toMatchObject({ content: TEXT, finish: ['stop'], errored: false, done: true });
      const last = events.at(-1)!;
      if (request === withUsage) expect(last).toMatchObject({ choices: [], usage: { total_tokens: 2 } });
      else expect(last.usage).toBeUndefined();
    }
  });

  it('tool calls with streamed arguments', async () => {
    const { events, done } = await call('chat/completions', withUsage, {
      type: 'tool_call',
      text: 'Checking.',
      calls: CALLS,
      chunkSize: 3,
    });
    const r = checkChatStream(events, done);
    expect(r).toMatchObject({ content: 'Checking.', finish: ['tool_calls'], done: true });
    expect(r.args).toEqual([JSON.stringify(CALLS[0]!.arguments), '{"q":"x"}']);
  });

  it('incomplete: finish_reason length or content_filter', async () => {
    for (const reason of ['max_output_tokens', 'content_filter'] as const) {
      const { events, done } = await call('chat/completions', body, {
        type: 'incomplete',
        text: 'Hal',
        reason,
      });
      const r = checkChatStream(events, done);
      expect(r.finish).toEqual([reason === 'content_filter' ? 'content_filter' : 'length']);
    }
  });

  it('failures end the stream with an error payload and no [DONE]', async () => {
    for (const turn of [
      { type: 'response_failed', textBefore: 'par' },
      { type: 'stream_error', code: 'rate_limit_exceeded' },
    ] as FakeTurn[]) {
      const { events, done } = await call('chat/completions', body, turn);
      expect(checkChatStream(events, done)).toMatchObject({ errored: true, done: false });
    }
  });

  it('non-streaming requests get a chat.completion object; failures an ErrorResponse', async () => {
    const plain = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    const text = await call('chat/completions', plain, { type: 'text', text: TEXT });
    expectValid('CreateChatCompletionResponse', text.json);
    expect(text.json).toMatchObject({
      object: 'chat.completion',
      choices: [{ finish_reason: 'stop', message: { role: 'assistant', content: TEXT } }],
    });
    const tools = await call('chat/completions', plain, { type: 'tool_call', calls: CALLS });
    expectValid('CreateChatCompletionResponse', tools.json);
    expect(tools.json).toMatchObject({
      choices: [
        { finish_reason: 'tool_calls', message: { content: null, tool_calls: [{ id: 'call_w' }, {}] } },
      ],
    });
    const cut = await call('chat/completions', plain, { type: 'incomplete', text: 'Ha' });
    expectValid('CreateChatCompletionResponse', cut.json);
    for (const turn of [
      { type: 'response_failed' },
      { type: 'stream_error' },
      { type: 'http_error', status: 503 },
    ] as FakeTurn[]) {
      const failed = await call('chat/completions', plain, turn);
      expect(failed.status).toBeGreaterThanOrEqual(500);
      expectValid('ErrorResponse', failed.json);
    }
  });
});

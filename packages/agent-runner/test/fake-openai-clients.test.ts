// The fake OpenAI server driven by real clients: the `openai` package's Responses stream helper and plain calls,
// Chat Completions (plain, streamed and the stream helper), and the Agents SDK's Runner, streaming and not.
import { Agent, OpenAIProvider, Runner, tool } from '@openai/agents';
import OpenAI from 'openai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createFakeOpenAIServer, type FakeOpenAIServer, type FakeTurn } from '../src/testing.js';

// A fresh server per test: turns a failed test left unanswered cannot leak into the next one.
let fake: FakeOpenAIServer;
let client: OpenAI;
beforeEach(async () => {
  fake = await createFakeOpenAIServer();
  client = new OpenAI({ apiKey: 'sk-test', baseURL: fake.baseURL, maxRetries: 0 });
});
afterEach(async () => {
  await expect.poll(() => fake.openStreams()).toBe(0);
  await fake.close();
});

const MODEL = 'gpt-4.1-mini';
const TEXT = 'Hello there, Ada! Ünïcödé and 🎉.';
const WEATHER = { name: 'get_weather', arguments: { city: 'Paris' }, callId: 'call_w' };

describe('openai client: Responses API', () => {
  it('the responses.stream() helper assembles a text turn', async () => {
    fake.enqueue({ type: 'text', text: TEXT, chunkSize: 4 });
    const stream = client.responses.stream({ model: MODEL, input: 'hi' });
    const deltas: string[] = [];
    stream.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(deltas.join('')).toBe(TEXT);
    expect(final.output_text).toBe(TEXT);
    expect(final.status).toBe('completed');
  });

  it('the responses.stream() helper assembles text followed by function calls', async () => {
    fake.enqueue({
      type: 'tool_call',
      text: 'Checking.',
      calls: [WEATHER, { name: 'noop', arguments: {} }],
      chunkSize: 3,
    });
    const stream = client.responses.stream({ model: MODEL, input: 'hi' });
    const argDeltas: string[] = [];
    stream.on('response.function_call_arguments.delta', (e) => argDeltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(final.output_text).toBe('Checking.');
    expect(final.output.filter((o) => o.type === 'function_call')).toMatchObject([
      { name: 'get_weather', call_id: 'call_w', arguments: '{"city":"Paris"}', status: 'completed' },
      { name: 'noop', arguments: '{}' },
    ]);
    expect(argDeltas.join('')).toBe('{"city":"Paris"}{}');
  });

  it('responses.create() streaming yields the events; not streaming, the response', async () => {
    fake.enqueue({ type: 'text', text: TEXT });
    const events = [];
    for await (const e of await client.responses.create({ model: MODEL, input: 'hi', stream: true }))
      events.push(e);
    expect(events[0]!.type).toBe('response.created');
    expect(events.at(-1)!.type).toBe('response.completed');

    fake.enqueue({ type: 'text', text: TEXT });
    const response = await client.responses.create({ model: MODEL, input: 'hi' });
    expect(response.output_text).toBe(TEXT);

    fake.enqueue({ type: 'tool_call', calls: [WEATHER] });
    const calls = await client.responses.create({ model: MODEL, input: 'hi' });
    expect(calls.output).toMatchObject([{ type: 'function_call', arguments: '{"city":"Paris"}' }]);
  });

  it('failed, incomplete and error turns reach the client as the API reports them', async () => {
    fake.enqueue({ type: 'response_failed', message: 'went wrong' });
    const failed = await client.responses.create({ model: MODEL, input: 'hi' });
    expect(failed).toMatchObject({ status: 'failed', error: { message: 'went wrong' } });

    fake.enqueue({ type: 'incomplete', text: 'Hal', reason: 'max_output_tokens' });
    const stream = client.responses.stream({ model: MODEL, input: 'hi' });
    const types: string[] = [];
    stream.on('event', (e) => types.push(e.type));
    await stream.done();
    expect(types.at(-1)).toBe('response.incomplete');

    fake.enqueue({ type: 'stream_error', message: 'overloaded', code: 'rate_limit_exceeded' });
    await expect(client.responses.stream({ model: MODEL, input: 'hi' }).finalResponse()).rejects.toThrow(
      /overloaded/,
    );
    fake.enqueue({ type: 'stream_error', message: 'overloaded' });
    await expect(client.responses.create({ model: MODEL, input: 'hi' })).rejects.toMatchObject({
      status: 500,
      message: expect.stringMatching(/overloaded/) as unknown,
    });
  });
});

describe('openai client: Chat Completions', () => {
  const messages = [{ role: 'user' as const, content: 'hi' }];

  it('create() not streaming and streaming', async () => {
    fake.enqueue({ type: 'text', text: TEXT });
    const completion = await client.chat.completions.create({ model: MODEL, messages });
    expect(completion.choices[0]!.message.content).toBe(TEXT);

    fake.enqueue({ type: 'text', text: TEXT, chunkSize: 2 });
    let text = '';
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(TEXT);
    expect(usage).toMatchObject({ total_tokens: 2 });
  });

  it('the chat.completions.stream() helper assembles streamed tool calls', async () => {
    fake.enqueue({ type: 'tool_call', calls: [WEATHER, { name: 'noop', arguments: {} }], chunkSize: 3 });
    const stream = client.chat.completions.stream({ model: MODEL, messages });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    expect(final.choices[0]!.message.tool_calls).toMatchObject([
      { id: 'call_w', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
      { function: { name: 'noop', arguments: '{}' } },
    ]);
  });

  it('a failed stream throws; a failed request is a 500', async () => {
    fake.enqueue({ type: 'response_failed', message: 'went wrong', textBefore: 'par' });
    await expect(
      client.chat.completions.stream({ model: MODEL, messages }).finalChatCompletion(),
    ).rejects.toThrow(/went wrong/);
    fake.enqueue({ type: 'response_failed', message: 'went wrong' });
    await expect(client.chat.completions.create({ model: MODEL, messages })).rejects.toMatchObject({
      status: 500,
    });
  });
});

describe('Agents SDK Runner', () => {
  const weather = tool({
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: z.object({ city: z.string() }),
    execute: ({ city }) => `sunny in ${city}`,
  });
  const agent = new Agent({ name: 'a', instructions: 'Be brief.', model: MODEL, tools: [weather] });
  const runner = (api: 'responses' | 'chat') =>
    new Runner({
      modelProvider: new OpenAIProvider({ openAIClient: client, useResponses: api === 'responses' }),
      tracingDisabled: true,
    });

  for (const api of ['responses', 'chat'] as const)
    for (const stream of [false, true]) {
      const how = `${api}, ${stream ? 'streaming' : 'not streaming'}`;

      it(`runs a tool call and its answer (${how})`, async () => {
        fake.enqueue(
          { type: 'tool_call', calls: [WEATHER], text: 'One moment.' },
          { type: 'text', text: TEXT },
        );
        let finalOutput: unknown;
        if (stream) {
          const result = await runner(api).run(agent, 'Weather in Paris?', { stream: true });
          const deltas: string[] = [];
          for await (const e of result)
            if (e.type === 'raw_model_stream_event' && e.data.type === 'output_text_delta')
              deltas.push(e.data.delta);
          await result.completed;
          expect(result.error).toBeFalsy();
          expect(deltas.join('')).toBe(`One moment.${TEXT}`);
          finalOutput = result.finalOutput;
        } else finalOutput = (await runner(api).run(agent, 'Weather in Paris?')).finalOutput;
        expect(finalOutput).toBe(TEXT);
        expect(fake.requests).toHaveLength(2);
        const second = JSON.stringify(fake.requests[1]!.body);
        expect(second).toContain('sunny in Paris');
        expect(second).toContain('call_w');
      });

      for (const turn of [
        { type: 'response_failed', message: 'went wrong', textBefore: 'par' },
        { type: 'stream_error', message: 'overloaded' },
        { type: 'http_error', status: 500, message: 'boom' },
      ] as FakeTurn[])
        it(`a ${turn.type} turn fails the run (${how})`, async () => {
          fake.enqueue(turn);
          const run = async () => {
            if (!stream) return runner(api).run(agent, 'hi');
            const result = await runner(api).run(agent, 'hi', { stream: true });
            for await (const _ of result);
            await result.completed;
            if (result.error) throw result.error as Error;
            return result;
          };
          await expect(run()).rejects.toThrow();
        });
    }

  it('an incomplete response fails a Responses run, streaming or not', async () => {
    for (const stream of [false, true]) {
      fake.enqueue({ type: 'incomplete', text: 'Hal' });
      const run = async () => {
        if (!stream) return runner('responses').run(agent, 'hi');
        const result = await runner('responses').run(agent, 'hi', { stream: true });
        for await (const _ of result);
        await result.completed;
        if (result.error) throw result.error as Error;
        return result;
      };
      await expect(run()).rejects.toThrow(/response\.incomplete/);
    }
  });
});

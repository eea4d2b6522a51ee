import OpenAI from 'openai';
import { Agent, OpenAIProvider, Runner } from '@openai/agents';
import { afterEach, describe, expect, it } from 'vitest';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing.js';

let fake: FakeOpenAIServer | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function runSdk(api: 'responses' | 'chat', input: string) {
  const client = new OpenAI({ apiKey: 'test-key', baseURL: fake!.baseURL, maxRetries: 0 });
  const runner = new Runner({
    modelProvider: new OpenAIProvider({ openAIClient: client, useResponses: api === 'responses' }),
    tracingDisabled: true,
  });
  const agent = new Agent({ name: 'a', instructions: 'x', model: 'fake-model' });
  const result = await runner.run(agent, input, { stream: true });
  const deltas: string[] = [];
  for await (const e of result) {
    if (e.type === 'raw_model_stream_event' && e.data.type === 'output_text_delta') deltas.push(e.data.delta);
  }
  await result.completed;
  return { deltas, finalOutput: result.finalOutput };
}

describe('fake OpenAI server', () => {
  for (const api of ['responses', 'chat'] as const) {
    it(`streams a scripted text turn over the ${api} API to the real SDK`, async () => {
      fake = await createFakeOpenAIServer({
        turns: [{ type: 'text', text: 'Hello there, Ada!', chunkSize: 5 }],
      });
      const { deltas, finalOutput } = await runSdk(api, 'hi');
      expect(deltas).toEqual(['Hello', ' ther', 'e, Ad', 'a!']);
      expect(finalOutput).toBe('Hello there, Ada!');
      expect(fake.requests).toHaveLength(1);
      expect(fake.requests[0]!.api).toBe(api === 'chat' ? 'chat_completions' : 'responses');
    });

    it(`scripted HTTP 500 fails the ${api} request`, async () => {
      fake = await createFakeOpenAIServer({ turns: [{ type: 'http_error', status: 500, message: 'boom' }] });
      await expect(runSdk(api, 'hi')).rejects.toThrow(/boom|500/);
    });

    it(`scripted stream failure fails the ${api} run`, async () => {
      fake = await createFakeOpenAIServer({
        turns: [{ type: 'response_failed', message: 'went wrong', textBefore: 'par' }],
      });
      await expect(runSdk(api, 'hi')).rejects.toThrow();
    });
  }

  it('answers 500 when the script is exhausted and uses respond() as a fallback', async () => {
    fake = await createFakeOpenAIServer();
    await expect(runSdk('responses', 'hi')).rejects.toThrow(/no scripted turn/);
    await fake.close();
    fake = await createFakeOpenAIServer({
      respond: (r) => ({ type: 'text', text: `echo ${JSON.stringify(r.body.input).length}` }),
    });
    const { finalOutput } = await runSdk('responses', 'hi');
    expect(finalOutput).toMatch(/^echo \d+$/);
  });

  it('rejects bodies over maxBodyBytes with 413', async () => {
    fake = await createFakeOpenAIServer({ maxBodyBytes: 100, turns: [{ type: 'text', text: 'x' }] });
    const res = await fetch(`${fake.baseURL}/responses`, {
      method: 'POST',
      body: JSON.stringify({ stream: true, input: 'x'.repeat(200) }),
    });
    expect(res.status).toBe(413);
  });

  it('waits for a reader that does not keep up instead of buffering the whole stream', async () => {
    const deltas = 160; // 10 MiB: on loopback the writes stall after about 4 MiB
    const size = 64 * 1024;
    let written = 0;
    fake = await createFakeOpenAIServer({
      turns: [{ type: 'text', text: 'x'.repeat(deltas * size), chunkSize: size }],
      onDeltaWritten: (i) => void (written = i + 1),
    });
    const res = await fetch(`${fake.baseURL}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ stream: true, messages: [] }),
    });
    // Nothing is read yet: the server stops once the socket buffers (a few MB on loopback) are full.
    await expect.poll(() => written).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(written).toBeLessThan(deltas);
    let bytes = 0;
    for await (const chunk of res.body!) bytes += (chunk as Uint8Array).length;
    expect(written).toBe(deltas);
    expect(bytes).toBeGreaterThan(deltas * size);
  });

  it('captures trace ingests', async () => {
    fake = await createFakeOpenAIServer();
    const waiting = fake.waitForTraceItems((items) => items.some((i) => i.id === 'trace_1'), 2000);
    const res = await fetch(fake.tracesEndpoint, {
      method: 'POST',
      body: JSON.stringify({ data: [{ object: 'trace', id: 'trace_1' }] }),
    });
    expect(res.status).toBe(200);
    await waiting;
    expect(fake.traceItems()).toEqual([{ object: 'trace', id: 'trace_1' }]);
    await expect(fake.waitForTraceItems(() => false, 50)).rejects.toThrow(/did not arrive/);
  });
});

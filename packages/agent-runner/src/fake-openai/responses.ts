import type { FakeTurn, FakeUsage } from './types.js';
import {
  argumentsText,
  chunks,
  isRecord,
  responsesUsage,
  sleep,
  unixNow,
  type Json,
  type PlayContext,
  type TurnResult,
} from './wire.js';

// The Responses API (`POST /v1/responses`): a scripted turn played as the API's full event sequence, or as one
// response object when the request does not stream.

/** The request's function tools as the Responses API echoes them in a response object. */
function echoedTools(tools: unknown): Json[] {
  if (!Array.isArray(tools)) return [];
  return tools.filter(isRecord).flatMap((t) =>
    t.type === 'function' && typeof t.name === 'string'
      ? [
          {
            type: 'function',
            name: t.name,
            description: typeof t.description === 'string' ? t.description : null,
            parameters: isRecord(t.parameters) ? t.parameters : null,
            strict: typeof t.strict === 'boolean' ? t.strict : null,
          },
        ]
      : [],
  );
}

function echoedToolChoice(choice: unknown): unknown {
  if (choice === 'none' || choice === 'auto' || choice === 'required') return choice;
  if (isRecord(choice) && choice.type === 'function' && typeof choice.name === 'string')
    return { type: 'function', name: choice.name };
  return 'auto';
}

/** A response object with every field the API's `Response` schema requires, echoing the request's settings. */
function newResponse(n: number, body: Json): Json {
  const metadata =
    isRecord(body.metadata) && Object.values(body.metadata).every((v) => typeof v === 'string');
  return {
    id: `resp_${n}`,
    object: 'response',
    created_at: unixNow(),
    status: 'in_progress',
    background: false,
    completed_at: null,
    error: null,
    incomplete_details: null,
    instructions: typeof body.instructions === 'string' ? body.instructions : null,
    max_output_tokens: Number.isInteger(body.max_output_tokens) ? body.max_output_tokens : null,
    model: typeof body.model === 'string' ? body.model : 'fake-model',
    output: [],
    parallel_tool_calls: typeof body.parallel_tool_calls === 'boolean' ? body.parallel_tool_calls : true,
    previous_response_id: typeof body.previous_response_id === 'string' ? body.previous_response_id : null,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    temperature: typeof body.temperature === 'number' ? body.temperature : 1,
    text: { format: { type: 'text' } },
    tool_choice: echoedToolChoice(body.tool_choice),
    tools: echoedTools(body.tools),
    top_p: typeof body.top_p === 'number' ? body.top_p : 1,
    truncation: 'disabled',
    metadata: metadata ? body.metadata : {},
  };
}

const TERMINAL_STATUS = {
  'response.completed': 'completed',
  'response.failed': 'failed',
  'response.incomplete': 'incomplete',
} as const;

/**
 * One Responses API answer: emits the stream events in the API's order, each with its `sequence_number`, and
 * keeps the response object they describe.
 */
class ResponsesPlayer {
  private seq = 0;
  private readonly response: Json;
  private readonly output: Json[] = [];

  constructor(private readonly ctx: PlayContext) {
    this.response = newResponse(ctx.n, ctx.body);
  }

  private snapshot(): Json {
    return { ...this.response, output: [...this.output] };
  }

  private event(type: string, fields: Json) {
    if (!this.ctx.sse) return undefined;
    const data = JSON.stringify({ type, ...fields, sequence_number: this.seq++ });
    return this.ctx.sse.write(`event: ${type}\ndata: ${data}\n\n`);
  }

  async start() {
    await this.event('response.created', { response: this.snapshot() });
    await this.event('response.in_progress', { response: this.snapshot() });
  }

  /**
   * Streams an assistant message. `end` is the item's final status, or `cut` to stop after the deltas (the
   * response then fails). Returns false when the client went away.
   */
  async message(text: string, size: number, delayMs: number, end: 'completed' | 'incomplete' | 'cut') {
    const { sse, signal, onDeltaWritten } = this.ctx;
    const outputIndex = this.output.length;
    const id = `msg_${this.ctx.n}`;
    const part = { type: 'output_text', text: '', annotations: [], logprobs: [] };
    const item = { id, type: 'message', role: 'assistant', status: 'in_progress', content: [] as Json[] };
    this.output.push(item);
    await this.event('response.output_item.added', { output_index: outputIndex, item });
    await this.event('response.content_part.added', {
      item_id: id,
      output_index: outputIndex,
      content_index: 0,
      part,
    });
    item.content.push(part);
    // The hot path of benchmarks: one preformatted prefix, only the delta itself is serialised.
    const type = 'response.output_text.delta';
    const prefix = `event: ${type}\ndata: {"type":"${type}","item_id":${JSON.stringify(id)},"output_index":${outputIndex},"content_index":0,"delta":`;
    let index = 0;
    for (const delta of chunks(text, Math.max(1, size))) {
      if (signal.aborted) return false;
      part.text += delta;
      if (sse) {
        const wait = sse.write(
          `${prefix}${JSON.stringify(delta)},"logprobs":[],"sequence_number":${this.seq++}}\n\n`,
        );
        onDeltaWritten?.(index++);
        if (wait) await wait;
      }
      if (delayMs > 0) await sleep(delayMs, signal);
    }
    if (signal.aborted) return false;
    if (end === 'cut') {
      item.status = 'incomplete';
      return true;
    }
    const at = { item_id: id, output_index: outputIndex, content_index: 0 };
    await this.event('response.output_text.done', { ...at, text: part.text, logprobs: [] });
    await this.event('response.content_part.done', { ...at, part });
    item.status = end;
    await this.event('response.output_item.done', { output_index: outputIndex, item });
    return true;
  }

  /** Streams a function call with its arguments in deltas. Returns false when the client went away. */
  async functionCall(call: { name: string; arguments: unknown; callId?: string }, i: number, size: number) {
    const { n, signal } = this.ctx;
    const outputIndex = this.output.length;
    const args = argumentsText(call.arguments);
    const id = `fc_${n}_${i}`;
    const item = {
      id,
      type: 'function_call',
      call_id: call.callId ?? `call_${n}_${i}`,
      name: call.name,
      arguments: '',
      status: 'in_progress',
    };
    this.output.push(item);
    await this.event('response.output_item.added', { output_index: outputIndex, item });
    for (const delta of chunks(args, Math.max(1, size))) {
      if (signal.aborted) return false;
      item.arguments += delta;
      await this.event('response.function_call_arguments.delta', {
        item_id: id,
        output_index: outputIndex,
        delta,
      });
    }
    await this.event('response.function_call_arguments.done', {
      item_id: id,
      output_index: outputIndex,
      name: call.name,
      arguments: args,
    });
    item.status = 'completed';
    await this.event('response.output_item.done', { output_index: outputIndex, item });
    return true;
  }

  /** Ends the response with its terminal event and returns the final response object. */
  async finish(
    type: keyof typeof TERMINAL_STATUS,
    fields: Json = {},
    usage?: FakeUsage,
  ): Promise<TurnResult> {
    Object.assign(this.response, fields, {
      status: TERMINAL_STATUS[type],
      completed_at: type === 'response.completed' ? unixNow() : null,
      usage: responsesUsage(usage),
    });
    const response = this.snapshot();
    await this.event(type, { response });
    return { kind: 'body', body: response };
  }

  /** Ends the stream with an `error` event. */
  async error(message: string, code: string): Promise<TurnResult> {
    await this.event('error', { code, message, param: null });
    return { kind: 'error', message, code };
  }
}

/** Plays a turn on the Responses API. Returns null when the client went away. */
export async function playResponses(turn: FakeTurn, ctx: PlayContext): Promise<TurnResult | null> {
  const p = new ResponsesPlayer(ctx);
  await p.start();
  switch (turn.type) {
    case 'text':
      if (!(await p.message(turn.text, turn.chunkSize ?? 8, turn.delayMs ?? 0, 'completed'))) return null;
      return p.finish('response.completed', {}, turn.usage);
    case 'incomplete':
      if (!(await p.message(turn.text, turn.chunkSize ?? 8, 0, 'incomplete'))) return null;
      return p.finish('response.incomplete', {
        incomplete_details: { reason: turn.reason ?? 'max_output_tokens' },
      });
    case 'tool_call': {
      const size = turn.chunkSize ?? 8;
      if (turn.text && !(await p.message(turn.text, size, 0, 'completed'))) return null;
      for (const [i, call] of turn.calls.entries()) if (!(await p.functionCall(call, i, size))) return null;
      if (turn.delayMs) await sleep(turn.delayMs, ctx.signal);
      if (ctx.signal.aborted) return null;
      return p.finish('response.completed', {}, turn.usage);
    }
    case 'response_failed':
      if (turn.textBefore && !(await p.message(turn.textBefore, 8, 0, 'cut'))) return null;
      return p.finish('response.failed', {
        error: { code: 'server_error', message: turn.message ?? 'scripted response.failed' },
      });
    case 'stream_error':
      if (turn.textBefore && !(await p.message(turn.textBefore, 8, 0, 'cut'))) return null;
      return p.error(turn.message ?? 'scripted stream error', turn.code ?? 'server_error');
    case 'http_error':
      throw new Error('http_error turns are answered before a stream starts');
  }
}

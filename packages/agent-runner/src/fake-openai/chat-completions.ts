import type { FakeTurn } from './types.js';
import {
  argumentsText,
  chunks,
  isRecord,
  sleep,
  unixNow,
  type Json,
  type PlayContext,
  type TurnResult,
} from './wire.js';

// Chat Completions (`POST /v1/chat/completions`): a scripted turn played as chunks, or as one `chat.completion`.

/** Plays a turn on Chat Completions: chunks when streaming, one `chat.completion` object otherwise. */
export async function playChat(turn: FakeTurn, ctx: PlayContext): Promise<TurnResult | null> {
  const { n, body, sse, signal, onDeltaWritten } = ctx;
  const id = `chatcmpl_${n}`;
  const created = unixNow();
  const model = typeof body.model === 'string' ? body.model : 'fake-model';
  const head = { id, object: 'chat.completion.chunk', created, model };
  const chunk = (delta: Json, finish: string | null = null) =>
    sse?.write(
      `data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`,
    );
  const contentPrefix = `data: ${JSON.stringify(head).slice(0, -1)},"choices":[{"index":0,"delta":{"content":`;
  let content: string | null = null;
  const streamText = async (text: string, size: number, delayMs: number) => {
    content = '';
    let index = 0;
    for (const delta of chunks(text, Math.max(1, size))) {
      if (signal.aborted) return false;
      content += delta;
      if (sse) {
        const wait = sse.write(
          `${contentPrefix}${JSON.stringify(delta)}},"logprobs":null,"finish_reason":null}]}\n\n`,
        );
        onDeltaWritten?.(index++);
        if (wait) await wait;
      }
      if (delayMs > 0) await sleep(delayMs, signal);
    }
    return !signal.aborted;
  };
  const usage = {
    prompt_tokens: 1,
    completion_tokens: 1,
    total_tokens: 2,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
  const finish = async (reason: string, toolCalls?: Json[]): Promise<TurnResult> => {
    if (sse) {
      await chunk({}, reason);
      const options = body.stream_options;
      if (isRecord(options) && options.include_usage === true)
        await sse.write(`data: ${JSON.stringify({ ...head, choices: [], usage })}\n\n`);
      await sse.write('data: [DONE]\n\n');
    }
    const message: Json = { role: 'assistant', content, refusal: null, annotations: [] };
    if (toolCalls) message.tool_calls = toolCalls;
    return {
      kind: 'body',
      body: {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: reason }],
        usage,
        service_tier: 'default',
      },
    };
  };
  const fail = async (message: string, code: string): Promise<TurnResult> => {
    await sse?.write(
      `data: ${JSON.stringify({ error: { message, type: 'server_error', param: null, code } })}\n\n`,
    );
    return { kind: 'error', message, code };
  };

  switch (turn.type) {
    case 'text':
      await chunk({ role: 'assistant', content: '', refusal: null });
      if (!(await streamText(turn.text, turn.chunkSize ?? 8, turn.delayMs ?? 0))) return null;
      return finish('stop');
    case 'incomplete':
      await chunk({ role: 'assistant', content: '', refusal: null });
      if (!(await streamText(turn.text, turn.chunkSize ?? 8, 0))) return null;
      return finish(turn.reason === 'content_filter' ? 'content_filter' : 'length');
    case 'tool_call': {
      const size = turn.chunkSize ?? 8;
      await chunk({ role: 'assistant', content: turn.text ? '' : null, refusal: null });
      if (turn.text && !(await streamText(turn.text, size, 0))) return null;
      const calls = turn.calls.map((c, i) => ({
        id: c.callId ?? `call_${n}_${i}`,
        type: 'function',
        function: { name: c.name, arguments: argumentsText(c.arguments) },
      }));
      for (const [i, call] of calls.entries()) {
        await chunk({
          tool_calls: [
            {
              index: i,
              id: call.id,
              type: 'function',
              function: { name: call.function.name, arguments: '' },
            },
          ],
        });
        for (const delta of chunks(call.function.arguments, Math.max(1, size))) {
          if (signal.aborted) return null;
          await chunk({ tool_calls: [{ index: i, function: { arguments: delta } }] });
        }
      }
      if (turn.delayMs) await sleep(turn.delayMs, signal);
      if (signal.aborted) return null;
      return finish('tool_calls', calls);
    }
    case 'response_failed':
    case 'stream_error': {
      await chunk({ role: 'assistant', content: '', refusal: null });
      if (turn.textBefore && !(await streamText(turn.textBefore, 8, 0))) return null;
      const fallback = turn.type === 'response_failed' ? 'scripted stream failure' : 'scripted stream error';
      return fail(turn.message ?? fallback, (turn.type === 'stream_error' && turn.code) || 'server_error');
    }
    case 'http_error':
      throw new Error('http_error turns are answered before a stream starts');
  }
}

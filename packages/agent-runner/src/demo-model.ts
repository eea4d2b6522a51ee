import { randomUUID } from 'node:crypto';
import type {
  AgentInputItem,
  Model,
  ModelProvider,
  ModelRequest,
  ModelResponse,
  StreamEvent,
} from '@openai/agents';
import { Usage } from '@openai/agents';

/** Options of {@link createDemoModelProvider}. */
export interface DemoModelOptions {
  /** Delay between streamed deltas in ms (default 15). */
  delayMs?: number;
  /** Characters per delta (default 4). */
  chunkSize?: number;
}

type Output = ModelResponse['output'];

function textOf(item: AgentInputItem): string | null {
  const i = item as { role?: string; type?: string; content?: unknown };
  if (i.role !== 'user') return null;
  if (typeof i.content === 'string') return i.content;
  if (Array.isArray(i.content)) {
    return i.content
      .map((c: { type?: string; text?: string }) =>
        c.type === 'input_text' && typeof c.text === 'string' ? c.text : '',
      )
      .join('');
  }
  return null;
}

const NAME = /\b(?:call me|my name is)\s+([\p{L}][\p{L}'-]{0,39}(?:\s[\p{L}][\p{L}'-]{0,39})?)/iu;

/** Decides the demo model's answer from the input alone, so the same input always gets the same answer. */
function decide(
  request: ModelRequest,
): { kind: 'text'; text: string } | { kind: 'call'; name: string; args: string } {
  const items: AgentInputItem[] =
    typeof request.input === 'string'
      ? [{ role: 'user', content: request.input } as AgentInputItem]
      : request.input;
  const last = items[items.length - 1] as { type?: string; output?: unknown } | undefined;
  const findTool = (name: string) =>
    request.tools.find((t) => t.type === 'function' && t.name.replace(/[^A-Za-z0-9]/g, '_') === name);
  const profileTool = findTool('profile_patch');
  const clearTool = findTool('profile_clear');
  if (last?.type === 'function_call_result') {
    const output = JSON.stringify(last.output ?? '');
    const call = items.findLast((i) => (i as { type?: string }).type === 'function_call') as
      { name?: string } | undefined;
    if (call?.name?.replace(/[^A-Za-z0-9]/g, '_') === 'profile_clear') {
      return {
        kind: 'text',
        text: /rejected/i.test(output)
          ? 'All right, I left your profile as it is.'
          : /error|fail/i.test(output)
            ? 'I tried to clear your profile, but the tool reported an error.'
            : 'Done: I have cleared your profile.',
      };
    }
    const failed = /error|fail/i.test(output);
    return {
      kind: 'text',
      text: failed
        ? 'I tried to update your profile, but the tool reported an error.'
        : 'Done! I have updated your profile.',
    };
  }
  const userTexts = items.map(textOf).filter((t): t is string => t !== null);
  const current = userTexts[userTexts.length - 1] ?? '';
  if (/\bforget me\b/i.test(current) && clearTool && clearTool.type === 'function') {
    return { kind: 'call', name: clearTool.name, args: '{}' };
  }
  const named = NAME.exec(current);
  if (named?.[1] && profileTool && profileTool.type === 'function') {
    return { kind: 'call', name: profileTool.name, args: JSON.stringify({ displayName: named[1] }) };
  }
  if (/\bwhat(?:'s| is) my name\b/i.test(current)) {
    const earlier = userTexts
      .slice(0, -1)
      .reverse()
      .map((t) => NAME.exec(t)?.[1])
      .find(Boolean);
    return {
      kind: 'text',
      text: earlier ? `You asked me to call you ${earlier}.` : "You haven't told me your name yet.",
    };
  }
  const turn = userTexts.length;
  return {
    kind: 'text',
    text: `Demo model here (offline, no API key). You said: "${current.slice(0, 200)}". This is message ${turn} in this thread. Say "call me Ada" and I will update your profile with a tool. Say "forget me" and I will clear it once you approve.`,
  };
}

function buildOutput(decision: ReturnType<typeof decide>): Output {
  if (decision.kind === 'call') {
    return [
      {
        type: 'function_call',
        callId: `call_${randomUUID().replace(/-/g, '')}`,
        name: decision.name,
        arguments: decision.args,
        status: 'completed',
      },
    ] as Output;
  }
  return [
    {
      type: 'message',
      id: `msg_${randomUUID().replace(/-/g, '')}`,
      role: 'assistant',
      status: 'completed',
      content: [{ type: 'output_text', text: decision.text }],
    },
  ] as Output;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });

/** The offline demo model: deterministic, streams in small deltas, calls `profile.patch` for "call me Ada". */
export class DemoModel implements Model {
  readonly #delayMs: number;
  readonly #chunkSize: number;
  constructor(options: DemoModelOptions = {}) {
    this.#delayMs = options.delayMs ?? 15;
    this.#chunkSize = Math.max(1, options.chunkSize ?? 4);
  }

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    return { usage: new Usage(), output: buildOutput(decide(request)), responseId: `demo_${randomUUID()}` };
  }

  async *getStreamedResponse(request: ModelRequest): AsyncIterable<StreamEvent> {
    const decision = decide(request);
    const output = buildOutput(decision);
    yield { type: 'response_started' };
    if (decision.kind === 'text') {
      const itemId = (output[0] as { id?: string }).id;
      for (let i = 0; i < decision.text.length; i += this.#chunkSize) {
        if (this.#delayMs > 0) await sleep(this.#delayMs, request.signal);
        yield {
          type: 'output_text_delta',
          delta: decision.text.slice(i, i + this.#chunkSize),
          ...(itemId ? { itemId } : {}),
        };
      }
    } else if (this.#delayMs > 0) {
      await sleep(this.#delayMs, request.signal);
    }
    yield {
      type: 'response_done',
      response: {
        id: `demo_${randomUUID()}`,
        usage: { inputTokens: 0, outputTokens: 0, totalTokens: 0 },
        output: output as Extract<StreamEvent, { type: 'response_done' }>['response']['output'],
      },
    };
  }
}

/**
 * The offline demo model as a `ModelProvider`: used when no OPENAI_API_KEY is set so the whole system works with
 * no key. Deterministic; streams small deltas with a small delay; asks for `profile.patch` when the user says
 * "call me <name>".
 *
 * @example
 * const runner = createRunner({ modelProvider: createDemoModelProvider({ delayMs: 0 }) });
 */
export function createDemoModelProvider(options: DemoModelOptions = {}): ModelProvider {
  const model = new DemoModel(options);
  return { getModel: () => model };
}

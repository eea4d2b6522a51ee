import { createHash } from 'node:crypto';
import { OpenAIResponsesCompactionSession, withCustomSpan, type Session } from '@openai/agents';
import type OpenAI from 'openai';
import { AgentRunnerError } from './errors.js';

/** Default of {@link CompactionOptions.afterItems}. */
export const DEFAULT_COMPACT_AFTER_ITEMS = 100;

type CompactRequest = Parameters<OpenAI['responses']['compact']>[0];
type CompactRequestOptions = Parameters<OpenAI['responses']['compact']>[1];
type CompactAnswer = Awaited<ReturnType<OpenAI['responses']['compact']>>;

/** The part of an OpenAI client that compaction calls: `responses.compact` (`POST /v1/responses/compact`). */
export interface CompactionClient {
  responses: {
    compact(body: CompactRequest, options?: CompactRequestOptions): PromiseLike<CompactAnswer>;
  };
}

/** Settings of history compaction (`createRunner({ compaction })`). */
export interface CompactionOptions {
  /**
   * Compact once the run's view of the thread holds at least this many items besides user messages and earlier
   * compaction items (assistant messages, tool calls and results), checked after each model turn (2..1000,
   * default 100).
   */
  afterItems?: number;
  /** Model named in the compact request (default: the runner's model name); an OpenAI model (`gpt-*`, `o*`). */
  model?: string;
  /**
   * Client whose `responses.compact` is called. Default: the runner's OpenAI client; the Agents SDK's default
   * client when the runner uses the SDK's defaults; a deterministic offline compaction with the demo model.
   * Required with a custom `modelProvider`.
   */
  client?: CompactionClient;
}

/** Settings after validation. */
export interface ResolvedCompaction {
  afterItems: number;
  model: string;
  client: CompactionClient | undefined;
}

const OPENAI_MODEL = /^(?:ft:)?(?:gpt-|o\d)/i;

/** Checks compaction settings; throws `invalid_options` with what to change. */
export function resolveCompaction(
  options: CompactionOptions | false | undefined,
  env: NodeJS.ProcessEnv,
  modelName: string | undefined,
): ResolvedCompaction | undefined {
  if (options === false) return undefined;
  const fromEnv = env.THREADLINE_COMPACT_AFTER_ITEMS ? Number(env.THREADLINE_COMPACT_AFTER_ITEMS) : undefined;
  if (options === undefined && fromEnv === undefined) return undefined;
  const afterItems = options?.afterItems ?? fromEnv ?? DEFAULT_COMPACT_AFTER_ITEMS;
  if (!Number.isSafeInteger(afterItems) || afterItems < 2 || afterItems > 1000)
    throw new AgentRunnerError(
      'invalid_options',
      `compaction afterItems must be an integer from 2 to 1000, got ${String(afterItems)}`,
    );
  const model = options?.model ?? modelName;
  if (typeof model !== 'string' || !OPENAI_MODEL.test(model.trim()))
    throw new AgentRunnerError(
      'invalid_options',
      `compaction needs an OpenAI model name (gpt-*, o*): set compaction.model (got ${model === undefined ? 'a model instance' : JSON.stringify(model)})`,
    );
  if (options?.client !== undefined && typeof options.client.responses?.compact !== 'function')
    throw new AgentRunnerError('invalid_options', 'compaction.client must have responses.compact()');
  return { afterItems, model: model.trim(), client: options?.client };
}

/**
 * Wraps a run's agent memory (an SDK `Session`) so that the Agents SDK compacts it through `responses.compact`
 * once it passes the threshold. The input mode is used (the items are sent, nothing is read back from OpenAI's
 * response storage), and the compacted items replace the thread's stored items behind the API. Each compaction
 * is a custom span `history.compaction` of the run's trace.
 */
export function compactingMemory(
  memory: Session,
  settings: ResolvedCompaction,
  client: CompactionClient,
): Session {
  const traced: CompactionClient = {
    responses: {
      compact: (body, options) =>
        withCustomSpan(
          async (span) => {
            const answer = await client.responses.compact(body, options);
            span.spanData.data = { model: settings.model, outputItems: answer.output?.length ?? 0 };
            return answer;
          },
          { data: { name: 'history.compaction', data: { model: settings.model } } },
        ),
    },
  };
  return new OpenAIResponsesCompactionSession({
    underlyingSession: memory,
    model: settings.model,
    compactionMode: 'input',
    client: traced as unknown as OpenAI,
    shouldTriggerCompaction: ({ compactionCandidateItems }) =>
      compactionCandidateItems.length >= settings.afterItems,
  });
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Prefix of the demo compaction's `encrypted_content` (readable: the demo encrypts nothing). */
export const DEMO_COMPACTION_PREFIX = 'demo-summary:';

/**
 * The offline compaction used with the demo model: deterministic, shaped like the API's answer. Every user
 * message is kept; everything else becomes one `compaction` item that says how many items it replaced and quotes
 * the start of the last assistant message.
 */
export function createDemoCompactionClient(): CompactionClient {
  const compact = (body: CompactRequest): Promise<CompactAnswer> => {
    const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : body.input;
    const items = Array.isArray(input) ? (input as unknown[]) : [];
    const output: Json[] = [];
    let replaced = 0;
    let lastAnswer = '';
    for (const item of items) {
      if (!isRecord(item)) continue;
      if ((item.type ?? 'message') === 'message' && item.role === 'user') {
        const parts =
          typeof item.content === 'string' ? [{ type: 'input_text', text: item.content }] : item.content;
        const content = Array.isArray(parts)
          ? parts
              .filter(isRecord)
              .map((p) => ({ type: 'input_text', text: typeof p.text === 'string' ? p.text : '' }))
          : [];
        output.push({ type: 'message', role: 'user', content });
        continue;
      }
      replaced++;
      if (item.role === 'assistant' && Array.isArray(item.content)) {
        const text = item.content
          .filter(isRecord)
          .map((p) => (typeof p.text === 'string' ? p.text : ''))
          .join('');
        if (text) lastAnswer = text;
      }
    }
    const digest = createHash('sha256').update(JSON.stringify(items)).digest('hex').slice(0, 24);
    const quote = lastAnswer.length > 80 ? `${lastAnswer.slice(0, 79)}…` : lastAnswer;
    output.push({
      type: 'compaction',
      id: `cmp_demo_${digest}`,
      encrypted_content: `${DEMO_COMPACTION_PREFIX} ${replaced} earlier items${quote ? `; last answer: ${quote}` : ''}`,
    });
    return Promise.resolve({
      id: `resp_cmp_demo_${digest}`,
      object: 'response.compaction',
      // User messages in input form, as the API returns them; the SDK normalises them either way.
      output: output as unknown as CompactAnswer['output'],
      created_at: Math.floor(Date.now() / 1000),
      usage: {
        input_tokens: 0,
        input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
        output_tokens: 0,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 0,
      },
    });
  };
  return { responses: { compact } };
}

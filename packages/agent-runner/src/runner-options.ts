import type { Agent, Model, ModelProvider, Tool } from '@openai/agents';
import type { AgentEvent, RunRequest, ToolManifest } from '@threadline/contracts';
import { ManifestCache, type ToolClient } from '@threadline/tools-kit';
import { DEFAULT_HISTORY_ITEMS, checkHistoryItems } from './agent-memory.js';
import type { CompactionOptions } from './compaction.js';
import type { TracingOptions } from './tracing.js';

/**
 * Runs one thread's user message and streams contract events; what `createRunner` returns. The HTTP service
 * and the relay's in-process transport speak to this. (Not the Agents SDK's `Runner`, which runs one agent loop;
 * an `AgentRunner` makes one SDK `Runner` per run.)
 */
export interface AgentRunner {
  /** Streams exactly one RUN_STARTED first and exactly one terminal event (RUN_FINISHED or RUN_ERROR) last. */
  run(request: RunRequest, options?: { signal?: AbortSignal }): AsyncIterable<AgentEvent>;
}

/**
 * @deprecated use {@link AgentRunner}; `Runner` is also the Agents SDK's name for its own loop. Removed in the
 * next major.
 */
export type Runner = AgentRunner;

/** What the SDK run context holds for tools of a Threadline run. */
export interface RunContextData {
  threadId: string;
  runId: string;
  userId: string;
  /** The run's tool client (act-as token of this run). */
  tools: ToolClient;
  /** Marks a tool call as failed so TOOL_CALL_RESULT says `ok: false` (see `localTool`). */
  reportToolError(callId: string, message: string): void;
}

/** What {@link AgentRunnerOptions.agentFactory} receives. */
export interface AgentFactoryContext {
  request: RunRequest;
  tools: ToolClient;
  manifest: ToolManifest;
}

/**
 * How much a run may do and wait, and what the runner keeps between runs. Every field has a default that suits
 * the hosts we know; see {@link DEFAULT_AGENT_RUNNER_TUNING}.
 */
export interface AgentRunnerTuning {
  /**
   * Most model turns per run, then RUN_ERROR `max_turns_exceeded` (1..1000).
   * @default 10
   */
  maxTurns: number;
  /**
   * Timeout per tool or agent-memory call in ms (1..3,600,000).
   * @default 30000
   */
  toolTimeoutMs: number;
  /**
   * The history window: how many of the newest items of the thread's agent memory a run reads and gives the
   * model, in one call (1..1000). Older items stay stored but unseen.
   * @default env THREADLINE_HISTORY_ITEMS, then 200
   */
  historyItems: number;
  /**
   * Where tool manifests are kept between runs, per token scope (router URL, issuer, audience, tool list), and
   * revalidated with the router's ETag; `false` fetches the manifest on every run.
   * @default a new `ManifestCache` of 100 scopes per runner
   */
  manifestCache: ManifestCache | false;
  /**
   * The `expiresAt` the runner puts on TOOL_APPROVAL_REQUESTED: now + this, in ms (1 ms..7 days). The relay
   * replaces it with its own bound (`tuning.approvalTtlMs`), which is the one that counts.
   * @default 86400000 (24 h)
   */
  approvalTtlMs: number;
}

/** The defaults of {@link AgentRunnerTuning} (`manifestCache`: a new `ManifestCache` per runner). */
export const DEFAULT_AGENT_RUNNER_TUNING: Readonly<Omit<AgentRunnerTuning, 'manifestCache'>> = Object.freeze({
  maxTurns: 10,
  toolTimeoutMs: 30_000,
  historyItems: DEFAULT_HISTORY_ITEMS,
  approvalTtlMs: 24 * 60 * 60 * 1000,
});

/** The tuning keys still accepted at the top level of the options (deprecated: pass them as `tuning`). */
export interface DeprecatedTopLevelTuning {
  /** @deprecated use `tuning.maxTurns`; removed in the next major. */
  maxTurns?: number;
  /** @deprecated use `tuning.toolTimeoutMs`; removed in the next major. */
  toolTimeoutMs?: number;
  /** @deprecated use `tuning.historyItems`; removed in the next major. */
  historyItems?: number;
  /** @deprecated use `tuning.manifestCache`; removed in the next major. */
  manifestCache?: ManifestCache | false;
  /** @deprecated use `tuning.approvalTtlMs`; removed in the next major. */
  approvalTtlMs?: number;
}

/** The keys of {@link AgentRunnerTuning}. */
export const AGENT_RUNNER_TUNING_KEYS = [
  'maxTurns',
  'toolTimeoutMs',
  'historyItems',
  'manifestCache',
  'approvalTtlMs',
] as const satisfies readonly (keyof AgentRunnerTuning)[];

/** Options of `createRunner`. */
export interface AgentRunnerOptions extends DeprecatedTopLevelTuning {
  /** The agent; its tools are kept and the host's tools are added per run. */
  agent?: Agent<RunContextData>;
  /** Builds the agent per run instead (e.g. per-user instructions). The host's tools are added to it. */
  agentFactory?: (ctx: AgentFactoryContext) => Agent<RunContextData> | Promise<Agent<RunContextData>>;
  /** Model name or instance (default: env THREADLINE_MODEL, then "gpt-4.1-mini"). */
  model?: string | Model;
  /**
   * Where model names resolve. Default: OpenAI when OPENAI_API_KEY (or `openai.apiKey`) is set, else OpenAI
   * through the Agents SDK's own defaults when `setDefaultOpenAIKey()` or `setDefaultOpenAIClient()` gave one,
   * otherwise the offline demo model.
   */
  modelProvider?: ModelProvider;
  /** OpenAI client settings used when no `modelProvider` is given. */
  openai?: { apiKey?: string; baseURL?: string; api?: 'responses' | 'chat_completions'; maxRetries?: number };
  /** Tracing settings, or `false` to turn tracing off. */
  tracing?: TracingOptions | false;
  /** Extra tools that run in the agent service itself. Build them with `localTool` to get `ok: false` on failure. */
  localTools?: Tool<RunContextData>[];
  /**
   * Compacts a thread's agent memory through the Responses API's compact endpoint once it passes `afterItems`
   * (see {@link CompactionOptions}); the compacted items replace the stored items behind the API. Off by default;
   * env THREADLINE_COMPACT_AFTER_ITEMS turns it on with that threshold. With the demo model the compaction is a
   * deterministic offline one.
   */
  compaction?: CompactionOptions | false;
  /** fetch used for tool calls (default global fetch). */
  fetch?: typeof fetch;
  /** Environment read for defaults (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where the runner says which model it uses and logs unexpected errors (default console). */
  logger?: Pick<Console, 'info' | 'warn' | 'error'>;
  /**
   * Per-run bounds and caching (see {@link AgentRunnerTuning}); the defaults suit every host we know. A key given
   * here wins over its deprecated top-level spelling.
   */
  tuning?: Partial<AgentRunnerTuning>;
}

/** @deprecated use {@link AgentRunnerOptions}; removed in the next major. */
export type CreateRunnerOptions = AgentRunnerOptions;

/**
 * The tuning a runner uses: `tuning`, then the deprecated top-level keys, then env (THREADLINE_HISTORY_ITEMS),
 * then the defaults. Values are checked by `checkRunnerOptions` before; `historyItems` from env here.
 */
export function resolveTuning(options: AgentRunnerOptions, env: NodeJS.ProcessEnv): AgentRunnerTuning {
  const given = { ...pickTuning(options), ...pickTuning(options.tuning ?? {}) };
  const fromEnv = env.THREADLINE_HISTORY_ITEMS ? Number(env.THREADLINE_HISTORY_ITEMS) : undefined;
  return {
    ...DEFAULT_AGENT_RUNNER_TUNING,
    ...given,
    historyItems: checkHistoryItems(given.historyItems ?? fromEnv),
    manifestCache: given.manifestCache ?? new ManifestCache(),
  };
}

/** The tuning keys set (not undefined) on `source`. */
function pickTuning(source: Partial<AgentRunnerTuning>): Partial<AgentRunnerTuning> {
  const out: Record<string, unknown> = {};
  for (const key of AGENT_RUNNER_TUNING_KEYS) if (source[key] !== undefined) out[key] = source[key];
  return out as Partial<AgentRunnerTuning>;
}

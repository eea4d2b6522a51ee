import {
  Agent,
  MaxTurnsExceededError,
  OpenAIProvider,
  RunContext,
  Usage,
  RunState,
  Runner as SdkRunner,
  AgentsError,
  UserError,
  generateTraceId,
  getDefaultOpenAIClient,
  tool,
  type Tool,
} from '@openai/agents';
import OpenAI from 'openai';
import {
  LIMITS,
  createHistoryWindowedEvent,
  createRunErrorEvent,
  createRunFinishedEvent,
  createRunStartedEvent,
  createToolApprovalRequestedEvent,
  type AgentEvent,
  type RunErrorCode,
  type RunRequest,
  type RunUsage,
  type ToolManifest,
  type ToolResult,
} from '@threadline/contracts';
import { createToolClient, type ToolClient } from '@threadline/tools-kit';
import { toAgentTools } from '@threadline/tools-kit/agents';
import { checkRunnerOptions } from './options.js';
import {
  compactingMemory,
  createDemoCompactionClient,
  resolveCompaction,
  type CompactionClient,
} from './compaction.js';
import { createDemoModelProvider } from './demo-model.js';
import { SdkDefaultsProvider } from './sdk-defaults.js';
import { AgentRunnerError } from './errors.js';
import { EventMapper, type ToolOutcome } from './event-mapper.js';
import { AgentMemory } from './agent-memory.js';
import {
  resolveTuning,
  type AgentRunner,
  type AgentRunnerOptions,
  type RunContextData,
} from './runner-options.js';
import { flushTraces, installTracing, resolveTracing, traceStarted } from './tracing.js';

const DEFAULT_INSTRUCTIONS =
  'You are a helpful assistant inside a chat. Answer briefly. Use the tools you have when the user asks for something they do.';

function defaultToolError(message: string): string {
  return `An error occurred while running the tool. Please try again. Error: ${message}`;
}

/**
 * The SDK's `tool()`, except that a failing call shows as `ok: false` in TOOL_CALL_RESULT (the SDK itself turns a
 * throwing tool into a normal output). The model still gets the error text. Use it for `localTools`.
 *
 * @example
 * createRunner({ localTools: [localTool({ name: 'lookup', description: '...', parameters: z.object({ q: z.string() }), execute })] });
 */
export const localTool: typeof tool = ((options: Parameters<typeof tool>[0]) => {
  if (options.errorFunction === null) return tool(options);
  const own = options.errorFunction;
  // The options' union type does not survive the spread; the result is still exactly what `tool()` accepts.
  return tool({
    ...options,
    errorFunction: (
      runContext: Parameters<NonNullable<typeof own>>[0],
      error: unknown,
      details?: Parameters<NonNullable<typeof own>>[2],
    ) => {
      const message = error instanceof Error ? error.message : String(error);
      const callId = details?.toolCall?.callId;
      const ctx = runContext.context as Partial<RunContextData> | undefined;
      if (callId && typeof ctx?.reportToolError === 'function') ctx.reportToolError(callId, message);
      return own ? own(runContext, error, details) : defaultToolError(message);
    },
  } as Parameters<typeof tool>[0]);
}) as typeof tool;

/** The run's token usage from the SDK's state; undefined when the model reported none. */
function usageOf(state: {
  usage?: { requests: number; inputTokens: number; outputTokens: number; totalTokens: number };
}): RunUsage | undefined {
  const u = state.usage;
  if (!u) return undefined;
  const clean = (n: number) => (Number.isSafeInteger(n) && n >= 0 ? n : 0);
  const usage = {
    inputTokens: clean(u.inputTokens),
    outputTokens: clean(u.outputTokens),
    totalTokens: clean(u.totalTokens),
    requests: clean(u.requests),
  };
  if (usage.inputTokens === 0 && usage.outputTokens === 0 && usage.totalTokens === 0) return undefined;
  return usage;
}

/** The usage recorded in a serialized run state (`context.usage`), or undefined. */
function savedUsage(serialized: string): ConstructorParameters<typeof Usage>[0] {
  try {
    const parsed = JSON.parse(serialized) as { context?: { usage?: ConstructorParameters<typeof Usage>[0] } };
    return parsed.context?.usage;
  } catch {
    return undefined;
  }
}

/** The rejection text the model gets for a call the user turned down. */
function rejectionText(reason: string | undefined): string {
  return reason
    ? `The user rejected this tool call, so it did not run. Their reason: ${reason}`
    : 'The user rejected this tool call, so it did not run.';
}

/** Makes an abort reason that a runner turns into RUN_ERROR with this code. */
export function abortReason(code: 'aborted' | 'cancelled' | 'shutdown', message: string): AgentRunnerError {
  return new AgentRunnerError(code, message);
}

function withSignal(client: ToolClient, signal: AbortSignal): ToolClient {
  const merge = (s?: AbortSignal) => (s ? AbortSignal.any([signal, s]) : signal);
  return {
    call: (name, input, options = {}) =>
      client.call(name, input, { ...options, signal: merge(options.signal) }),
    manifest: (options = {}) => client.manifest({ ...options, signal: merge(options.signal) }),
    state: (options = {}) => client.state({ ...options, signal: merge(options.signal) }),
    needsApproval: (name, input, options = {}) =>
      client.needsApproval(name, input, { ...options, signal: merge(options.signal) }),
    getRunState: (options = {}) => client.getRunState({ ...options, signal: merge(options.signal) }),
    putRunState: (state, options = {}) =>
      client.putRunState(state, { ...options, signal: merge(options.signal) }),
    deleteRunState: (options = {}) => client.deleteRunState({ ...options, signal: merge(options.signal) }),
  };
}

function findInChain<T>(error: unknown, test: (e: unknown) => e is T): T | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current; depth++) {
    if (test(current)) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Maps a failure to a RUN_ERROR code and a message safe to show. */
function classify(error: unknown): { code: RunErrorCode; message: string } {
  const own = findInChain(error, (e): e is AgentRunnerError => e instanceof AgentRunnerError);
  if (own?.code === 'tool_client_error') return { code: 'tool_client_error', message: own.message };
  if (findInChain(error, (e): e is MaxTurnsExceededError => e instanceof MaxTurnsExceededError)) {
    return {
      code: 'max_turns_exceeded',
      message: 'The agent reached its maximum number of turns without finishing.',
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  if (findInChain(error, (e): e is InstanceType<typeof OpenAI.APIError> => e instanceof OpenAI.APIError)) {
    return { code: 'model_error', message: `The model request failed: ${message}` };
  }
  if (error instanceof AgentsError && !(error instanceof UserError)) {
    return { code: 'model_error', message: `The model failed: ${message}` };
  }
  return { code: 'internal_error', message: `The agent failed: ${message}` };
}

function abortCode(signal: AbortSignal): { code: RunErrorCode; message: string } {
  const reason: unknown = signal.reason;
  if (
    reason instanceof AgentRunnerError &&
    (reason.code === 'cancelled' || reason.code === 'shutdown' || reason.code === 'aborted')
  ) {
    return { code: reason.code, message: reason.message };
  }
  return { code: 'aborted', message: 'The run was aborted.' };
}

const clip = (s: string) =>
  s.length > LIMITS.maxErrorMessageLength ? `${s.slice(0, LIMITS.maxErrorMessageLength - 1)}…` : s;

/**
 * Creates the agent runner: one Agents SDK run per request, agent memory through the API's tool endpoints, the
 * host's tools from its manifest, and one trace per run grouped by thread.
 *
 * @example
 * const runner = createRunner({ agent: new Agent({ name: 'Helper', instructions: 'Be brief.' }) });
 * for await (const event of runner.run(runRequest)) console.log(event.type);
 */
export function createRunner(options: AgentRunnerOptions = {}): AgentRunner {
  checkRunnerOptions(options);
  const env = options.env ?? process.env;
  const logger = options.logger ?? console;
  const tracing = resolveTracing(options.tracing, env);
  const customProcessors = options.tracing !== false && options.tracing?.processors !== undefined;
  const noTracingKey = !tracing.disabled && !tracing.apiKey && !customProcessors;
  const tracingOff = () => {
    // Without a key the SDK would log a failed export after every run; say it once instead.
    tracing.disabled = true;
    logger.warn(
      '[threadline-agent] tracing off: no OPENAI_API_KEY or OPENAI_TRACING_API_KEY to export traces with (run `threadline-agent doctor`)',
    );
  };
  if (options.tracing !== false && options.tracing?.install !== false) installTracing(options.tracing, env);
  const { maxTurns, approvalTtlMs, toolTimeoutMs, historyItems, manifestCache } = resolveTuning(options, env);
  const model = options.model ?? (env.THREADLINE_MODEL || 'gpt-4.1-mini');
  const modelName = typeof model === 'string' ? model : undefined;

  const compaction = resolveCompaction(options.compaction, env, modelName);
  if (compaction && !compaction.client && options.modelProvider)
    throw new AgentRunnerError(
      'invalid_options',
      'with a custom modelProvider, compaction needs compaction.client (an OpenAI client)',
    );

  let modelProvider = options.modelProvider;
  let sdkDefaults: SdkDefaultsProvider | undefined;
  let openAIClient: OpenAI | undefined;
  if (!modelProvider) {
    const apiKey = options.openai?.apiKey ?? (env.OPENAI_API_KEY || undefined);
    if (apiKey) {
      const baseURL = options.openai?.baseURL ?? (env.OPENAI_BASE_URL || undefined);
      const client = new OpenAI({
        apiKey,
        ...(baseURL ? { baseURL } : {}),
        maxRetries: options.openai?.maxRetries ?? 2,
      });
      openAIClient = client;
      modelProvider = new OpenAIProvider({
        openAIClient: client,
        useResponses: options.openai?.api !== 'chat_completions',
      });
      logger.info(
        `[threadline-agent] model: ${typeof model === 'string' ? model : 'custom'} via OpenAI${baseURL ? ` at ${baseURL}` : ''}`,
      );
    } else {
      // No key here: the Agents SDK's own setters may hold one (checked at the first run).
      sdkDefaults = new SdkDefaultsProvider({
        useResponses: options.openai?.api !== 'chat_completions',
        fallback: createDemoModelProvider(),
        onDecided: (usesSdk) => {
          if (usesSdk) {
            // Traces then go out as the SDK would send them: with setTracingExportApiKey()'s key.
            logger.info(
              `[threadline-agent] model: ${modelName ?? 'custom'} via OpenAI (the Agents SDK's default client or key)`,
            );
            return;
          }
          logger.info(
            '[threadline-agent] model: offline demo model (no OPENAI_API_KEY, setDefaultOpenAIKey() or setDefaultOpenAIClient())',
          );
          if (noTracingKey) tracingOff();
        },
      });
      modelProvider = sdkDefaults;
    }
  }
  if (noTracingKey && !sdkDefaults) tracingOff();
  const provider = modelProvider;
  const demoCompaction = createDemoCompactionClient();
  /** The client a run's compaction calls, decided like the model: given, the runner's, the SDK's, or the demo. */
  const compactionClient = async (): Promise<CompactionClient> => {
    if (compaction?.client) return compaction.client;
    if (openAIClient) return openAIClient;
    if (sdkDefaults && !(await sdkDefaults.usesSdk(modelName))) return demoCompaction;
    return (getDefaultOpenAIClient() as unknown as CompactionClient | undefined) ?? new OpenAI();
  };

  async function* run(
    request: RunRequest,
    runOptions: { signal?: AbortSignal } = {},
  ): AsyncGenerator<AgentEvent> {
    const base = { threadId: request.threadId, runId: request.runId };
    const internal = new AbortController();
    const external = runOptions.signal;
    const onAbort = () => internal.abort(external?.reason);
    if (external?.aborted) onAbort();
    else external?.addEventListener('abort', onAbort, { once: true });
    const signal = internal.signal;
    const outcomes = new Map<string, ToolOutcome>();
    let terminal: AgentEvent | null = null;
    const resume = request.resume;

    // A resumed run continues the one that started earlier: no second RUN_STARTED.
    if (!resume)
      yield createRunStartedEvent({
        ...base,
        ...(request.parentRunId ? { parentRunId: request.parentRunId } : {}),
        ...(request.regenerates ? { regenerates: request.regenerates } : {}),
      });
    try {
      const rawClient = createToolClient({
        baseUrl: request.tools.baseUrl,
        token: request.tools.token,
        threadId: request.threadId,
        timeoutMs: toolTimeoutMs,
        ...(manifestCache ? { manifestCache } : {}),
        ...(options.fetch ? { fetch: options.fetch } : {}),
      });
      const client = withSignal(rawClient, signal);
      const manifestResult: ToolResult<ToolManifest> = await client.manifest();
      if (!manifestResult.ok) {
        if (signal.aborted) throw signal.reason;
        throw new AgentRunnerError(
          'tool_client_error',
          `could not load the tool manifest: ${manifestResult.error.code}: ${manifestResult.error.message}`,
        );
      }
      const manifest = manifestResult.data;
      const hostTools = toAgentTools(client, manifest, {
        onResult: ({ callId, result }) => {
          if (!callId) return;
          outcomes.set(
            callId,
            result.ok ? { ok: true } : { ok: false, error: `${result.error.code}: ${result.error.message}` },
          );
        },
      });
      // Tool names sent to the model may differ from manifest names (OpenAI forbids dots); events use the manifest's.
      const visible = manifest.tools.filter((t) => !t.internal);
      const displayNames = new Map<string, string>();
      hostTools.forEach((t, i) => {
        const entry = visible[i];
        if (entry) displayNames.set(t.name, entry.name);
      });
      const baseAgent = options.agentFactory
        ? await options.agentFactory({ request, tools: client, manifest })
        : (options.agent ??
          new Agent<RunContextData>({ name: 'Assistant', instructions: DEFAULT_INSTRUCTIONS }));
      const taken = new Set(baseAgent.tools.map((t) => t.name));
      const extra = [...(options.localTools ?? []), ...(hostTools as Tool<RunContextData>[])].filter((t) => {
        if (taken.has(t.name)) return false;
        taken.add(t.name);
        return true;
      });
      const agent = baseAgent.clone({ tools: [...baseAgent.tools, ...extra] });

      // Decides demo model or the SDK's defaults (and with that, tracing) before the first run is configured.
      await sdkDefaults?.usesSdk(modelName);
      const traceId = generateTraceId();
      const sdkRunner = new SdkRunner({
        modelProvider: provider,
        // An explicit runner model wins; otherwise the agent's own model, then the default name.
        ...(options.model !== undefined || !agent.model ? { model } : {}),
        tracingDisabled: tracing.disabled,
        traceIncludeSensitiveData: tracing.includeSensitiveData,
        workflowName: tracing.workflowName,
        traceId,
        groupId: request.threadId,
        traceMetadata: { threadId: request.threadId, runId: request.runId, userId: request.user.id },
        ...(tracing.apiKey ? { tracing: { apiKey: tracing.apiKey } } : {}),
      });
      const context: RunContextData = {
        threadId: request.threadId,
        runId: request.runId,
        userId: request.user.id,
        tools: client,
        reportToolError: (callId, message) => outcomes.set(callId, { ok: false, error: message }),
      };
      const mapper = new EventMapper({ ...base, outcomes, displayName: (n) => displayNames.get(n) ?? n });
      // Agent memory goes through the unlinked client: a cancelled run still records the user's message.
      const memory = new AgentMemory(rawClient, request.threadId, { historyItems });
      // A regenerate replaces the newest answer: it leaves agent memory, and the message comes back as input.
      if (request.regenerates) await memory.dropTurn(request.message);
      // `session` is the SDK's name for the memory it reads and extends.
      const session = compaction ? compactingMemory(memory, compaction, await compactionClient()) : memory;
      let input: string | RunState<RunContextData, typeof agent> = request.message;
      if (resume) {
        const saved = await client.getRunState();
        if (!saved.ok) {
          if (signal.aborted) throw signal.reason;
          throw new AgentRunnerError(
            'tool_client_error',
            `could not load the paused run: ${saved.error.code}: ${saved.error.message}`,
          );
        }
        if (saved.data.state === null)
          throw new AgentRunnerError('tool_client_error', 'no saved state for this paused run');
        // The saved context holds no functions: this run's tool client and reporter replace it. The SDK keeps
        // the usage of a context given this way as it is, so the usage before the pause is carried over here.
        const runContext = new RunContext<RunContextData>(context);
        runContext.usage = new Usage(savedUsage(saved.data.state));
        const state = await RunState.fromStringWithContext<RunContextData, typeof agent>(
          agent,
          saved.data.state,
          runContext,
        );
        const item = state
          .getInterruptions()
          .find((i) => (i.rawItem as { callId?: string }).callId === resume.toolCallId);
        if (!item)
          throw new AgentRunnerError(
            'tool_client_error',
            `tool call ${resume.toolCallId} does not wait for approval in this run`,
          );
        if (resume.approved) state.approve(item);
        else {
          state.reject(item, { message: rejectionText(resume.reason) });
          outcomes.set(resume.toolCallId, {
            ok: false,
            error: 'The user rejected this call; it did not run.',
          });
        }
        input = state;
      }
      const result = await sdkRunner.run(agent, input, {
        stream: true,
        session,
        context,
        maxTurns,
        signal,
      });
      // The SDK read the history before handing back the stream: say once, before any answer, what was left out.
      const window = memory.lastWindow;
      if (window?.compacted)
        yield createHistoryWindowedEvent({ ...base, windowItems: window.items, reason: 'compacted' });
      else if (window?.omitted) yield createHistoryWindowedEvent({ ...base, windowItems: window.items });
      try {
        for await (const event of result) {
          for (const out of mapper.map(event)) yield out;
        }
        await result.completed;
      } catch (error) {
        if (!signal.aborted) throw error;
      }
      const pending = result.interruptions?.[0];
      if (signal.aborted || result.cancelled) {
        terminal = createRunErrorEvent({ ...base, ...abortCode(signal) });
      } else if (result.error) {
        throw result.error;
      } else if (pending) {
        // A tool call waits for a person: save the run behind the API, say what waits, end this stream.
        const raw = pending.rawItem as { callId?: string; name?: string; arguments?: string };
        const saved = await client.putRunState(result.state.toString());
        if (!saved.ok) {
          if (signal.aborted) throw signal.reason;
          throw new AgentRunnerError(
            'tool_client_error',
            `could not save the paused run: ${saved.error.code}: ${saved.error.message}`,
          );
        }
        const name = pending.name ?? raw.name ?? 'tool';
        const args = raw.arguments ?? '{}';
        // The run paused: its state is saved, and the stream ends without a terminal event.
        yield createToolApprovalRequestedEvent({
          ...base,
          toolCallId: raw.callId ?? 'unknown',
          toolName: displayNames.get(name) ?? name,
          args: args.length <= LIMITS.maxDeltaLength ? args : '{}',
          expiresAt: new Date(Date.now() + approvalTtlMs).toISOString(),
        });
      } else {
        const usage = usageOf(result.state);
        terminal = createRunFinishedEvent({
          ...base,
          ...(traceStarted(traceId) ? { traceId } : {}),
          ...(usage ? { usage } : {}),
        });
      }
      // The run is over: its saved state (if it paused earlier) is not needed any more.
      if (resume && terminal) await client.deleteRunState();
    } catch (error) {
      if (signal.aborted) terminal = createRunErrorEvent({ ...base, ...abortCode(signal) });
      else {
        const { code, message } = classify(error);
        if (code === 'internal_error') logger.error('[threadline-agent] run failed unexpectedly', error);
        terminal = createRunErrorEvent({ ...base, code, message: clip(message) });
      }
    } finally {
      external?.removeEventListener('abort', onAbort);
      // A consumer that stops early must not leave the SDK run going.
      if (!terminal) internal.abort(abortReason('aborted', 'the consumer stopped reading'));
    }
    // Paused (the only way to get here without a terminal event): the stream ends without one.
    if (!terminal) {
      if (!tracing.disabled) void flushTraces();
      return;
    }
    try {
      yield terminal;
    } finally {
      if (!tracing.disabled) void flushTraces();
    }
  }

  return { run };
}

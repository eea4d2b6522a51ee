import { Runner as SdkRunner, generateTraceId, type RunState } from '@openai/agents';
import {
  createHistoryWindowedEvent,
  createRunErrorEvent,
  createRunFinishedEvent,
  createRunStartedEvent,
  type AgentEvent,
  type RunRequest,
} from '@threadline/contracts';
import { createToolClient } from '@threadline/tools-kit';
import { AgentMemory } from './agent-memory.js';
import { compactingMemory, resolveCompaction } from './compaction.js';
import { EventMapper, type ToolOutcome } from './event-mapper.js';
import { chooseModel } from './model-choice.js';
import { checkRunnerOptions } from './options.js';
import { pauseForApproval, resumedState, usageOf } from './paused-runs.js';
import { abortFailure, abortReason, classifyFailure, clipErrorMessage } from './run-errors.js';
import { agentWithTools, loadHostTools, withSignal } from './run-tools.js';
import {
  resolveTuning,
  type AgentRunner,
  type AgentRunnerOptions,
  type RunContextData,
} from './runner-options.js';
import { flushTraces, installTracing, resolveTracing, traceStarted } from './tracing.js';

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
  const compaction = resolveCompaction(
    options.compaction,
    env,
    typeof model === 'string' ? model : undefined,
  );
  const choice = chooseModel({
    options,
    env,
    logger,
    model,
    compaction,
    onDemoDecidedLater: () => {
      if (noTracingKey) tracingOff();
    },
  });
  if (noTracingKey && !choice.decidedLater) tracingOff();

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
      const host = await loadHostTools(client, signal, outcomes);
      const agent = await agentWithTools(options, request, client, host);

      // Decides demo model or the SDK's defaults (and with that, tracing) before the first run is configured.
      await choice.decide();
      const traceId = generateTraceId();
      const sdkRunner = new SdkRunner({
        modelProvider: choice.provider,
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
      const displayName = (n: string) => host.displayNames.get(n) ?? n;
      const mapper = new EventMapper({ ...base, outcomes, displayName });
      // Agent memory goes through the unlinked client: a cancelled run still records the user's message.
      const memory = new AgentMemory(rawClient, request.threadId, { historyItems });
      // A regenerate replaces the newest answer: it leaves agent memory, and the message comes back as input.
      if (request.regenerates) await memory.dropTurn(request.message);
      // `session` is the SDK's name for the memory it reads and extends.
      const session = compaction
        ? compactingMemory(memory, compaction, await choice.compactionClient())
        : memory;
      const input: string | RunState<RunContextData, typeof agent> = resume
        ? await resumedState({ agent, client, context, resume, outcomes, signal })
        : request.message;
      const result = await sdkRunner.run(agent, input, {
        stream: true,
        session,
        context,
        maxTurns,
        signal,
      });
      // The SDK read the memory before handing back the stream: say once, before any answer, what was left out.
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
        terminal = createRunErrorEvent({ ...base, ...abortFailure(signal) });
      } else if (result.error) {
        throw result.error;
      } else if (pending) {
        // A tool call waits for a person: the run is saved and paused, and the stream ends without a terminal event.
        yield await pauseForApproval({
          pending,
          state: result.state,
          client,
          ids: base,
          displayNames: host.displayNames,
          approvalTtlMs,
          signal,
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
      if (signal.aborted) terminal = createRunErrorEvent({ ...base, ...abortFailure(signal) });
      else {
        const { code, message } = classifyFailure(error);
        if (code === 'internal_error') logger.error('[threadline-agent] run failed unexpectedly', error);
        terminal = createRunErrorEvent({ ...base, code, message: clipErrorMessage(message) });
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

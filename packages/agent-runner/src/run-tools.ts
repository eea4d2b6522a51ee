import { Agent, type Tool } from '@openai/agents';
import type { RunRequest, ToolManifest, ToolResult } from '@threadline/contracts';
import type { ToolClient } from '@threadline/tools-kit';
import { toAgentTools } from '@threadline/tools-kit/agents';
import { AgentRunnerError } from './errors.js';
import type { ToolOutcome } from './event-mapper.js';
import type { AgentRunnerOptions, RunContextData } from './runner-options.js';

// The tools of one run: the host's (from its manifest, called with the run's act-as token) and the local ones,
// added to the agent.

const DEFAULT_INSTRUCTIONS =
  'You are a helpful assistant inside a chat. Answer briefly. Use the tools you have when the user asks for something they do.';

/** The client with every call also bound to `signal` (the run's), besides the call's own signal. */
export function withSignal(client: ToolClient, signal: AbortSignal): ToolClient {
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

/** The host's tools of one run, as the model and as the events name them. */
export interface HostTools {
  manifest: ToolManifest;
  tools: Tool<RunContextData>[];
  /** SDK tool name → manifest name (names sent to the model may differ: OpenAI forbids dots). */
  displayNames: Map<string, string>;
}

/** Loads the host's manifest and makes its tools; each call's result is recorded in `outcomes` by call id. */
export async function loadHostTools(
  client: ToolClient,
  signal: AbortSignal,
  outcomes: Map<string, ToolOutcome>,
): Promise<HostTools> {
  const manifestResult: ToolResult<ToolManifest> = await client.manifest();
  if (!manifestResult.ok) {
    if (signal.aborted) throw signal.reason;
    throw new AgentRunnerError(
      'tool_client_error',
      `could not load the tool manifest: ${manifestResult.error.code}: ${manifestResult.error.message}`,
    );
  }
  const manifest = manifestResult.data;
  const tools = toAgentTools(client, manifest, {
    onResult: ({ callId, result }) => {
      if (!callId) return;
      outcomes.set(
        callId,
        result.ok ? { ok: true } : { ok: false, error: `${result.error.code}: ${result.error.message}` },
      );
    },
  });
  const visible = manifest.tools.filter((t) => !t.internal);
  const displayNames = new Map<string, string>();
  tools.forEach((t, i) => {
    const entry = visible[i];
    if (entry) displayNames.set(t.name, entry.name);
  });
  return { manifest, tools: tools as Tool<RunContextData>[], displayNames };
}

/**
 * The run's agent: the given one, the factory's, or a default assistant, with the local and host tools added.
 * A tool whose name the agent (or an earlier tool) already has is left out.
 */
export async function agentWithTools(
  options: AgentRunnerOptions,
  request: RunRequest,
  client: ToolClient,
  host: HostTools,
): Promise<Agent<RunContextData>> {
  const baseAgent = options.agentFactory
    ? await options.agentFactory({ request, tools: client, manifest: host.manifest })
    : (options.agent ?? new Agent<RunContextData>({ name: 'Assistant', instructions: DEFAULT_INSTRUCTIONS }));
  const taken = new Set(baseAgent.tools.map((t) => t.name));
  const extra = [...(options.localTools ?? []), ...host.tools].filter((t) => {
    if (taken.has(t.name)) return false;
    taken.add(t.name);
    return true;
  });
  return baseAgent.clone({ tools: [...baseAgent.tools, ...extra] });
}

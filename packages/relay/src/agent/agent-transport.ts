import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { RelayError } from '../errors.js';

/**
 * How the relay reaches the agent: start a run and stream its events back. Implementations may yield events
 * unvalidated; the relay validates every one of them.
 */
export interface AgentTransport {
  /** Starts a run; the iterable ends after the run's terminal event. Aborting `signal` stops it. */
  run(request: RunRequest, options: { signal: AbortSignal }): AsyncIterable<AgentEvent>;
  /**
   * Optional, for speed: the same stream as `run`, a batch of events at a time (e.g. every event one network
   * read carried). The relay uses it instead of `run` when present: one asynchronous step per batch instead
   * of one per event. Each batch should hold at least one event; they are validated like `run`'s.
   */
  runBatches?(request: RunRequest, options: { signal: AbortSignal }): AsyncIterable<readonly AgentEvent[]>;
  /** Best-effort cancel on the agent side, in addition to aborting the stream. */
  cancel?(runId: string): Promise<void>;
  /**
   * True when every run shares one connection (e.g. `httpAgentTransport({ http2: true })`), so one network
   * read carries many runs' events. The relay then leaves `earlyWriteThreads` off unless it is set: splitting
   * such a read into several store writes costs commits a busy relay cannot spare.
   */
  readonly multiplexed?: boolean;
}

/**
 * Why an agent stream failed; maps one-to-one onto the RUN_ERROR `code` the relay writes. `agent_busy`: the
 * agent is at capacity and did not start the run (HTTP 429); the relay then lets the run wait for a place
 * (bounded) and tries again, and writes `agent_busy` only when the wait is over.
 */
export type AgentFailureCode =
  'agent_unreachable' | 'agent_busy' | 'agent_stream_invalid' | 'agent_stream_ended';

/**
 * The agent could not be reached or sent something the relay cannot accept. `runErrorCode` is the code of
 * the RUN_ERROR the relay writes for it; `retryAfterMs`, with `agent_busy`, the agent's Retry-After.
 */
export class AgentTransportError extends RelayError {
  readonly runErrorCode: AgentFailureCode;
  constructor(
    runErrorCode: AgentFailureCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super('agent_unavailable', message, options);
    this.runErrorCode = runErrorCode;
  }
}

/** Something with the shape of an agent runner (e.g. `createRunner()` from @threadline/agent-runner). */
export interface InProcessRunner {
  run(request: RunRequest, options: { signal: AbortSignal }): AsyncIterable<AgentEvent>;
}

/**
 * Runs the agent in this process: for one-process setups, demos and tests.
 *
 * @example
 * const relay = createRelay({ store, agent: inProcessAgentTransport(createRunner({ agent })), tokens, toolsBaseUrl, tools });
 */
export function inProcessAgentTransport(runner: InProcessRunner): AgentTransport {
  return {
    run(request, options) {
      return runner.run(request, options);
    },
  };
}

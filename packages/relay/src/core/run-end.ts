import type { StoredEvent } from '../stores/store.js';

/** A run's terminal event as found in the log: which run it ends and how. */
export interface RunEnd {
  type: 'RUN_FINISHED' | 'RUN_ERROR';
  runId: string;
}

/**
 * The run a stored event ends, or undefined when it ends none: the one test of "this run is over" for every
 * reader of the log and the pub/sub. Only the event's own `type` counts, never the words inside its payload
 * (a message's text, a state value or a tool name may say `RUN_FINISHED`). The text test only skips the
 * parse for the events that cannot be terminal.
 */
export function runEndOf(event: StoredEvent): RunEnd | undefined {
  const json = event.json;
  if (!json.includes('"RUN_FINISHED"') && !json.includes('"RUN_ERROR"')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { type, runId } = parsed as { type?: unknown; runId?: unknown };
  if ((type !== 'RUN_FINISHED' && type !== 'RUN_ERROR') || typeof runId !== 'string') return undefined;
  return { type, runId };
}

/** True when the stored event is a run's RUN_FINISHED or RUN_ERROR (see {@link runEndOf}). */
export function endsRun(event: StoredEvent): boolean {
  return runEndOf(event) !== undefined;
}

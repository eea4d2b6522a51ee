import type { ContractIssue } from './errors.js';

// The agent service's HTTP protocol, as both sides speak it: the relay's HTTP agent transport (client) and
// @threadline/agent-runner's service (server). No zod here: this module is part of `@threadline/contracts/core`.

/** The agent service's paths, relative to its base URL. */
export const AGENT_HTTP_PATHS = {
  /** `POST`: start a run. The body is a run request (JSON); the answer is the run's events as SSE. */
  runs: '/runs',
  /** `GET`: `{ ok, activeRuns, maxConcurrentRuns }`, 200 while the service takes runs, 503 while it shuts down. */
  health: '/healthz',
} as const;

/** The path of one run, `/runs/<runId>` (percent-encoded): `DELETE` cancels it (202 `{ ok: true }`). */
export function agentRunPath(runId: string): string {
  return `${AGENT_HTTP_PATHS.runs}/${encodeURIComponent(runId)}`;
}

/**
 * Reads a request path as a run path (the inverse of {@link agentRunPath}): null when it is not one, else the
 * decoded run id, or `runId: undefined` when its percent-encoding is malformed (such a path names no run).
 */
export function matchAgentRunPath(pathname: string): { runId: string | undefined } | null {
  const prefix = `${AGENT_HTTP_PATHS.runs}/`;
  if (!pathname.startsWith(prefix)) return null;
  const segment = pathname.slice(prefix.length);
  if (segment === '' || segment.includes('/')) return null;
  try {
    return { runId: decodeURIComponent(segment) };
  } catch {
    return { runId: undefined };
  }
}

/** Media type of a run request and of every error body. */
export const JSON_MEDIA_TYPE = 'application/json';
/** Media type of the run stream that answers `POST /runs` (a `charset` parameter may follow). */
export const SSE_MEDIA_TYPE = 'text/event-stream';
/**
 * The heartbeat the service writes when it wrote nothing else for a while: an SSE comment, which readers skip.
 * It keeps proxies and idle timers from closing a run that is waiting for its model.
 */
export const SSE_HEARTBEAT = ': ping\n\n';

/**
 * One event on the run stream: a single `data:` line with the event's JSON and a blank line. JSON text has no
 * raw line breaks, so one line always holds the whole event; the stream ends after the run's terminal event.
 */
export function sseEventFrame(eventJson: string): string {
  return `data: ${eventJson}\n\n`;
}

/** Error codes of the agent service's JSON error bodies, with the HTTP status each one travels with. */
export const AGENT_HTTP_ERROR_STATUS = {
  invalid_json: 400,
  /** The run request does not match the contract; `issues` says where. */
  invalid_request: 400,
  /** Missing or wrong service credential (with `WWW-Authenticate: Bearer`). */
  unauthorized: 401,
  not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  /** A run with this id is already running. */
  run_conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  /** At capacity, the run was not started; `Retry-After` (seconds) says when to try again. */
  too_many_runs: 429,
  internal_error: 500,
  shutting_down: 503,
} as const;
/** An error code of the agent service, a key of {@link AGENT_HTTP_ERROR_STATUS}. */
export type AgentHttpErrorCode = keyof typeof AGENT_HTTP_ERROR_STATUS;
/** Every error code of the agent service, the keys of {@link AGENT_HTTP_ERROR_STATUS}. */
export const AGENT_HTTP_ERROR_CODES = Object.keys(AGENT_HTTP_ERROR_STATUS) as AgentHttpErrorCode[];

/** The body of every error answer of the agent service (`content-type: application/json`). */
export interface AgentHttpErrorBody {
  error: {
    code: AgentHttpErrorCode;
    message: string;
    /** For `invalid_request`: each problem of the run request, with its path. */
    issues?: ContractIssue[];
  };
}

/** The JSON text of an error body (see {@link AgentHttpErrorBody}). */
export function agentHttpErrorBody(
  code: AgentHttpErrorCode,
  message: string,
  issues?: readonly ContractIssue[],
): string {
  return JSON.stringify({ error: { code, message, ...(issues ? { issues } : {}) } });
}

import type { ContractIssue } from '@threadline/contracts';
import type { Res } from './http-io.js';

// The agent service's HTTP protocol as the relay's `httpAgentTransport` speaks it: its routes and its JSON error
// body. Everything the handler knows about paths and error bodies is here, in one place.

/** The service's paths. */
export const AGENT_SERVICE_PATHS = {
  /** `POST`: start a run (JSON run request), answered with its events as SSE. */
  runs: '/runs',
  /** `GET`: health. */
  health: '/healthz',
} as const;

/** Error codes of the service's JSON error bodies. */
export const AGENT_SERVER_ERROR_CODES = [
  'unauthorized',
  'invalid_json',
  'invalid_request',
  'unsupported_media_type',
  'payload_too_large',
  'request_timeout',
  'too_many_runs',
  'run_conflict',
  'not_found',
  'method_not_allowed',
  'shutting_down',
  'internal_error',
] as const;
/** One of {@link AGENT_SERVER_ERROR_CODES}. */
export type ServerErrorCode = (typeof AGENT_SERVER_ERROR_CODES)[number];

/** What a request path names: the health route, the runs collection, one run (`DELETE`), or nothing. */
export type AgentRoute =
  { route: 'health' } | { route: 'runs' } | { route: 'run'; runId: string | undefined } | { route: 'none' };

const RUN_PATH = new RegExp(`^${AGENT_SERVICE_PATHS.runs}/([^/]+)$`);

/** The route of a request target; an unparsable target (e.g. `http://[x/`) names nothing rather than throwing. */
export function matchRoute(target: string | undefined): AgentRoute {
  let pathname: string;
  try {
    pathname = new URL(target ?? '/', 'http://localhost').pathname;
  } catch {
    return { route: 'none' };
  }
  if (pathname === AGENT_SERVICE_PATHS.health) return { route: 'health' };
  if (pathname === AGENT_SERVICE_PATHS.runs) return { route: 'runs' };
  const m = RUN_PATH.exec(pathname);
  return m ? { route: 'run', runId: decodePathSegment(m[1] ?? '') } : { route: 'none' };
}

/** Decodes a path segment; malformed percent-encoding names no run (undefined) instead of throwing. */
function decodePathSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** Answers with the service's JSON error body `{ error: { code, message, issues? } }`, or resets a started answer. */
export function sendError(
  res: Res,
  status: number,
  code: ServerErrorCode,
  message: string,
  extra: { issues?: ContractIssue[]; headers?: Record<string, string> } = {},
): void {
  if (res.headersSent) return void res.destroy();
  // `connection` is an HTTP/1 header; HTTP/2 forbids it (node:http2 drops it with a warning or refuses it).
  const connection: Record<string, string> = res.req.httpVersionMajor === 1 ? { connection: 'close' } : {};
  res.writeHead(status, { 'content-type': 'application/json', ...connection, ...extra.headers });
  res.end(JSON.stringify({ error: { code, message, ...(extra.issues ? { issues: extra.issues } : {}) } }));
}

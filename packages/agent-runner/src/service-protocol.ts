import {
  AGENT_HTTP_ERROR_CODES,
  AGENT_HTTP_ERROR_STATUS,
  AGENT_HTTP_PATHS,
  JSON_MEDIA_TYPE,
  agentHttpErrorBody,
  matchAgentRunPath,
  type AgentHttpErrorCode,
  type ContractIssue,
} from '@threadline/contracts';
import type { Res } from './http-io.js';

// The agent service's side of the HTTP protocol that `@threadline/contracts` defines (paths, error codes with
// their statuses, the error body): how a request target maps to a route, and how an error is answered.

/** @deprecated Use `AGENT_HTTP_ERROR_CODES` from `@threadline/contracts`; removed in the next major release. */
export const AGENT_SERVER_ERROR_CODES = AGENT_HTTP_ERROR_CODES;

/** What a request path names: the health route, the runs collection, one run (`DELETE`), or nothing. */
export type AgentRoute =
  { route: 'health' } | { route: 'runs' } | { route: 'run'; runId: string | undefined } | { route: 'none' };

/** The route of a request target; an unparsable target (e.g. `http://[x/`) names nothing rather than throwing. */
export function matchRoute(target: string | undefined): AgentRoute {
  let pathname: string;
  try {
    pathname = new URL(target ?? '/', 'http://localhost').pathname;
  } catch {
    return { route: 'none' };
  }
  if (pathname === AGENT_HTTP_PATHS.health) return { route: 'health' };
  if (pathname === AGENT_HTTP_PATHS.runs) return { route: 'runs' };
  const run = matchAgentRunPath(pathname);
  return run ? { route: 'run', runId: run.runId } : { route: 'none' };
}

/**
 * Answers with the contract's error body for `code` (its HTTP status comes with the code), or resets an answer
 * that has already started.
 */
export function sendError(
  res: Res,
  code: AgentHttpErrorCode,
  message: string,
  extra: { issues?: ContractIssue[]; headers?: Record<string, string> } = {},
): void {
  if (res.headersSent) return void res.destroy();
  // `connection` is an HTTP/1 header; HTTP/2 forbids it (node:http2 drops it with a warning or refuses it).
  const connection: Record<string, string> = res.req.httpVersionMajor === 1 ? { connection: 'close' } : {};
  res.writeHead(AGENT_HTTP_ERROR_STATUS[code], {
    'content-type': JSON_MEDIA_TYPE,
    ...connection,
    ...extra.headers,
  });
  res.end(agentHttpErrorBody(code, message, extra.issues));
}

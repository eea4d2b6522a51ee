import { LIMITS, TOOL_ERROR_STATUS } from '@threadline/contracts';
import type { ToolError, ToolErrorCode, ToolIssue, ToolResult } from '@threadline/contracts';

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

/** Headers of the tool manifest: like every JSON answer, except that a client may keep it and revalidate. */
export const MANIFEST_HEADERS = {
  ...JSON_HEADERS,
  'cache-control': 'private, no-cache',
} as const;

/** A refusal on its way to becoming an error envelope (internal to the router and its adapters). */
export class Reject {
  constructor(
    readonly code: ToolErrorCode,
    readonly message: string,
    readonly issues?: ToolIssue[],
    readonly headers?: Record<string, string>,
  ) {}
}

/** The error envelope of a {@link Reject}, with the status its code travels with. */
export function fail(reject: Reject): Response {
  const error: ToolError = {
    code: reject.code,
    message: reject.message.slice(0, LIMITS.maxErrorMessageLength) || reject.code,
  };
  if (reject.issues && reject.issues.length > 0) error.issues = reject.issues.slice(0, 100);
  const ref = reject.headers?.['x-error-ref'];
  if (ref !== undefined) error.ref = ref;
  const headers: Record<string, string> = { ...reject.headers };
  // The rest of the request was never read: the connection cannot carry another request.
  if (reject.code === 'payload_too_large' || reject.code === 'request_timeout') headers.connection = 'close';
  return json(TOOL_ERROR_STATUS[reject.code], { ok: false, error }, headers);
}

/** A JSON response with the router's fixed safety headers. */
export function json(status: number, body: ToolResult, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } });
}

/** The answer to a call: its result envelope (200), or the refusal's error envelope. */
export function respond(result: ToolResult | Reject): Response {
  if (result instanceof Reject) return fail(result);
  return json(200, result);
}

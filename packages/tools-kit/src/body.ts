import { IdSchema, LIMITS, formatPath, toContractIssues } from '@threadline/contracts';
import { z } from 'zod';
import { Reject } from './responses.js';
import type { ToolDefinition } from './tool.js';

// Reading and checking request bodies: media type, size and time bounds, JSON, nesting, and the tool call
// envelope. Every failure is a Reject, never a throw.

/** The body of `POST /tools/:name` and `POST /needs-approval/:name`. */
export const ToolCallBodySchema = z.strictObject({
  threadId: IdSchema,
  input: z.unknown().optional(),
  idempotencyKey: IdSchema.optional(),
});

/** The body of `PUT /run-state`. */
export const RunStateBodySchema = z.strictObject({
  threadId: IdSchema,
  state: z.string().min(1),
});

/** Bodies nested deeper than this are refused before any schema looks at them (schemas recurse). */
const MAX_BODY_DEPTH = LIMITS.maxJsonDepth + 8;

/** Whether a Content-Type names JSON (or `text/plain`, which fetch gives a string body). */
export function isJsonMediaType(value: string): boolean {
  const type = value.split(';')[0]?.trim().toLowerCase() ?? '';
  // text/plain is what fetch labels a string body with by default; the body must still parse as JSON.
  return (
    type === 'application/json' || type === 'text/plain' || /^application\/[a-z0-9.+-]*\+json$/.test(type)
  );
}

/** Reads the body as JSON within `limit` bytes and `timeoutMs`; the parsed value, or why it was refused. */
export async function readJsonBody(request: Request, limit: number, timeoutMs: number): Promise<unknown> {
  const declared = request.headers.get('content-length');
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > limit) {
    return new Reject('payload_too_large', `the body may be at most ${limit} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // A client that trickles its body (or stops sending) must not hold the handler open indefinitely.
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      for (;;) {
        const next = await Promise.race([reader.read(), deadline]);
        if (next === 'timeout') {
          await reader.cancel().catch(() => {});
          return new Reject('request_timeout', `the body did not arrive within ${timeoutMs} ms`);
        }
        if (next.done) break;
        size += next.value.byteLength;
        if (size > limit) {
          await reader.cancel().catch(() => {});
          return new Reject('payload_too_large', `the body may be at most ${limit} bytes`);
        }
        chunks.push(next.value);
      }
    } catch {
      // The client went away mid-body: its fault, not ours, so no internal error and no error log.
      return new Reject('aborted', 'the request body could not be read to the end');
    } finally {
      clearTimeout(timer);
    }
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    return new Reject('invalid_json', 'the body is not valid UTF-8');
  }
  if (text.trim() === '') return new Reject('invalid_json', 'the body must be a JSON object');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return new Reject('invalid_json', 'the body is not valid JSON');
  }
  return checkBody(value, MAX_BODY_DEPTH) ?? value;
}

/**
 * Refuses what JSON.parse lets through but no schema should see: nesting past `max`, and numbers too large
 * for a double (`1e400` parses to Infinity, which would reach handlers that accept any JSON and later be
 * written back as `null`). Iterative on purpose: a recursive walk is what a deeply nested body would overflow.
 */
function checkBody(value: unknown, max: number): Reject | null {
  const stack: [unknown, number, (string | number)[]][] = [[value, 0, []]];
  while (stack.length > 0) {
    const [current, depth, path] = stack.pop() as [unknown, number, (string | number)[]];
    if (typeof current === 'number' && !Number.isFinite(current)) {
      const where = formatPath(path);
      return new Reject(
        'invalid_input',
        `a number in the body is out of range${where ? ` at ${where}` : ''}`,
        [{ path: where, message: 'number out of range' }],
      );
    }
    if (typeof current !== 'object' || current === null) continue;
    if (depth >= max) return new Reject('invalid_input', `the body is nested deeper than ${max} levels`);
    if (Array.isArray(current)) current.forEach((child, i) => stack.push([child, depth + 1, [...path, i]]));
    else for (const [key, child] of Object.entries(current)) stack.push([child, depth + 1, [...path, key]]);
  }
  return null;
}

/** Checks a call's input against the tool's schema; the parsed value, or `invalid_input` with the issues. */
export function validateInput(tool: ToolDefinition, input: unknown): { value: unknown } | Reject {
  let result: ReturnType<z.ZodType['safeParse']>;
  try {
    result = tool.input.safeParse(input);
  } catch {
    return new Reject('invalid_input', `invalid input for ${tool.name}`, [
      { path: '', message: 'unreadable value' },
    ]);
  }
  if (result.success) return { value: result.data };
  const issues = toContractIssues(result.error);
  const first = issues[0];
  const where = first && first.path !== '' ? ` at ${first.path}` : '';
  return new Reject(
    'invalid_input',
    `invalid input for ${tool.name}${first ? `: ${first.message}${where}` : ''}`,
    issues,
  );
}

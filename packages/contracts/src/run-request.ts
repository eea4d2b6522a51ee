import { z } from 'zod';
import { LIMITS } from './limits.js';
import { boundedString, IdSchema } from './primitives.js';

/**
 * A tools base URL: `http://` or `https://`, a host (and port) without escapes or credentials, then a path of
 * ASCII URL characters (well-formed `%` escapes); no query or fragment, since tool paths are appended to it.
 * The same pattern is in the JSON Schema.
 */
export const TOOLS_BASE_URL_PATTERN =
  /^https?:\/\/[A-Za-z0-9._~!$&'()*+,;=:[\]-]+(?:\/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*$/;

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const { protocol } = new URL(value);
  return protocol === 'http:' || protocol === 'https:';
}

/** Where and how the agent reaches the host's tools: a base URL and a short-lived act-as token. */
export const ToolsRefSchema = z.strictObject({
  baseUrl: boundedString(2048, {
    min: 1,
    pattern: TOOLS_BASE_URL_PATTERN,
    patternMessage: 'must be an http or https URL without query, fragment or credentials',
    refine: { check: isHttpUrl, message: 'must be a valid http or https URL' },
    jsonSchema: { format: 'uri' },
  }),
  token: boundedString(LIMITS.maxTokenLength, { min: 1 }),
});

/** The decision a resumed run continues with: the pending tool call's id, approved or not, and why. */
export const RunResumeSchema = z.strictObject({
  toolCallId: IdSchema,
  approved: z.boolean(),
  reason: boundedString(LIMITS.maxApprovalReasonLength).optional(),
});

/**
 * API → agent: start a run for one user message in one thread. With `regenerates` (a run id), `message` is the
 * thread's last user message again and the run replaces the answer of run `regenerates`: the agent drops that
 * answer from the thread's history (and the user message it answered, which it adds back as this run's input),
 * so the model sees the user message once and not the old answer. With `resume`, it continues a run that paused
 * for a tool approval (same `runId`; `message` is the run's user message again, the agent does not use it).
 */
export const RunRequestSchema = z.strictObject({
  threadId: IdSchema,
  runId: IdSchema,
  parentRunId: IdSchema.optional(),
  regenerates: IdSchema.optional(),
  user: z.strictObject({ id: IdSchema }),
  message: boundedString(LIMITS.maxMessageLength, { min: 1 }),
  tools: ToolsRefSchema,
  resume: RunResumeSchema.optional(),
});

/** The `resume` part of a run request. */
export type RunResume = z.infer<typeof RunResumeSchema>;

/** The tools reference of a run request. */
export type ToolsRef = z.infer<typeof ToolsRefSchema>;
/** A run request (API → agent). */
export type RunRequest = z.infer<typeof RunRequestSchema>;

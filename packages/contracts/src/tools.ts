import { z } from 'zod';
import { LIMITS } from './limits.js';
import { boundedString, CodeSchema, ErrorMessageSchema, IdSchema, ToolNameSchema } from './primitives.js';

/** Error codes of the tool result envelope, with the HTTP status each one travels with. */
export const TOOL_ERROR_STATUS = {
  invalid_input: 400,
  invalid_json: 400,
  token_missing: 401,
  token_invalid: 401,
  token_expired: 401,
  forbidden: 403,
  thread_mismatch: 403,
  tool_not_allowed: 403,
  /** The token's run is no longer running (finished, failed, cancelled) or never existed. */
  run_not_active: 403,
  /** The tool needs a person's approval and no approved decision exists for this call (its idempotency key). */
  approval_required: 403,
  not_found: 404,
  method_not_allowed: 405,
  /** The request body did not arrive in time (a slow or stalled client). */
  request_timeout: 408,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  timeout: 504,
  aborted: 499,
  unavailable: 503,
  internal_error: 500,
} as const;
/** Every tool error code, the keys of {@link TOOL_ERROR_STATUS}. */
export const TOOL_ERROR_CODES = Object.keys(TOOL_ERROR_STATUS) as (keyof typeof TOOL_ERROR_STATUS)[];
/** A tool error code. */
export type ToolErrorCode = keyof typeof TOOL_ERROR_STATUS;

/** One validation problem in a failed tool call: where (`path`, dotted) and what. */
export const ToolIssueSchema = z.strictObject({
  path: boundedString(1024),
  message: boundedString(LIMITS.maxErrorMessageLength),
});

/** The failure side of a tool result. `ref` is a server log reference for internal errors. */
export const ToolErrorSchema = z.strictObject({
  code: CodeSchema,
  message: ErrorMessageSchema,
  issues: z.array(ToolIssueSchema).max(100).optional(),
  ref: boundedString(LIMITS.maxIdLength).optional(),
});

/** Every tool endpoint answers with this envelope. */
export const ToolResultSchema = z.discriminatedUnion('ok', [
  z
    .strictObject({ ok: z.literal(true), data: z.unknown() })
    // Checked here too: zod before 4.4 let an `unknown` key be missing.
    .refine((result) => result.data !== undefined, { path: ['data'], message: 'expected a value' }),
  z.strictObject({ ok: z.literal(false), error: ToolErrorSchema }),
]);

/** One validation problem in a failed tool call. */
export type ToolIssue = z.infer<typeof ToolIssueSchema>;
/** The failure side of a tool result. */
export type ToolError = z.infer<typeof ToolErrorSchema>;
/** The tool result envelope; `T` types `data` on success. */
export type ToolResult<T = unknown> = { ok: true; data: T } | { ok: false; error: ToolError };

/** The audience of every act-as token. */
export const ACT_AS_AUDIENCE = 'threadline-tools' as const;
/** The audience of the API → agent service credential. */
export const AGENT_SERVICE_AUDIENCE = 'threadline-agent' as const;

/** Claims of an act-as token: who (`sub`), where (`thread`, `run`) and what (`tools`), for minutes. */
export const ActAsClaimsSchema = z.object({
  iss: boundedString(256, { min: 1 }),
  aud: z.union([
    z.literal(ACT_AS_AUDIENCE),
    z
      .array(z.string())
      .refine((a) => a.includes(ACT_AS_AUDIENCE), `must include "${ACT_AS_AUDIENCE}"`)
      .meta({ contains: { const: ACT_AS_AUDIENCE } }),
  ]),
  sub: IdSchema,
  thread: IdSchema,
  run: IdSchema,
  tools: z.array(ToolNameSchema).max(LIMITS.maxToolsPerToken),
  iat: z.number().int().nonnegative(),
  exp: z.number().int().positive(),
  jti: boundedString(LIMITS.maxIdLength, { min: 1 }),
});
/** Verified act-as token claims. */
export type ActAsClaims = z.infer<typeof ActAsClaimsSchema>;

// A JSON Schema document: any JSON object. Not z.record(), which before zod 4.1.13 refused an object with an
// own `constructor` key.
const SchemaObjectSchema = z
  .custom<Record<string, unknown>>(
    (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
    'expected an object',
  )
  .meta({ type: 'object' });

/** One entry of the tool manifest (`GET /tools`). */
export const ToolManifestEntrySchema = z.strictObject({
  name: ToolNameSchema,
  description: boundedString(4096),
  inputSchema: SchemaObjectSchema,
  outputSchema: SchemaObjectSchema,
  /** True for runtime tools (session history, event append) that are not offered to the model. */
  internal: z.boolean().optional(),
  /**
   * The call waits for a person's approval before it runs: `always`, or `check` (ask the host per call with
   * `POST /needs-approval/:name`, which answers `{ needsApproval: boolean }` for the call's input).
   */
  needsApproval: z.enum(['always', 'check']).optional(),
});
/** The tool manifest (`GET /tools`): the tools the presented token may call. */
export const ToolManifestSchema = z.strictObject({
  tools: z.array(ToolManifestEntrySchema),
});
/** One entry of the tool manifest. */
export type ToolManifestEntry = z.infer<typeof ToolManifestEntrySchema>;
/** The tool manifest. */
export type ToolManifest = z.infer<typeof ToolManifestSchema>;

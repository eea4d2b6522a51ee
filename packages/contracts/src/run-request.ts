import { z } from 'zod';
import { LIMITS } from './limits.js';
import { boundedString, IdSchema, SHIPPED_SCHEMA_EXTRAS } from './primitives.js';

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

/** The user's text of a run request: 1 to {@link LIMITS.maxMessageLength} UTF-16 code units. */
const UserTextSchema = boundedString(LIMITS.maxMessageLength, { min: 1 });
/** The same text under the field's old name; the shipped JSON Schema marks it deprecated. */
const DeprecatedUserTextSchema = boundedString(LIMITS.maxMessageLength, { min: 1 });
SHIPPED_SCHEMA_EXTRAS.set(DeprecatedUserTextSchema, {
  ...SHIPPED_SCHEMA_EXTRAS.get(DeprecatedUserTextSchema),
  deprecated: true,
});

const RunRequestFieldsSchema = z.strictObject({
  threadId: IdSchema,
  runId: IdSchema,
  parentRunId: IdSchema.optional(),
  regenerates: IdSchema.optional(),
  user: z.strictObject({ id: IdSchema }),
  text: UserTextSchema.optional(),
  message: DeprecatedUserTextSchema.optional(),
  tools: ToolsRefSchema,
  resume: RunResumeSchema.optional(),
});
/** Exactly one of `text` and its deprecated name `message`. */
const OneUserTextSchema = RunRequestFieldsSchema.superRefine((request, ctx) => {
  const hasText = request.text !== undefined;
  if (hasText === (request.message !== undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: ['text'],
      message: hasText
        ? 'send the user text once, as text (message is its deprecated name), not both'
        : 'required: the user text, as text',
    });
  }
});
// The shipped JSON Schema states the refinement with `oneOf`. Each branch names the property it requires, so a
// strict validator (ajv's strictRequired) sees it is a declared one.
SHIPPED_SCHEMA_EXTRAS.set(OneUserTextSchema, {
  oneOf: [
    { properties: { text: true }, required: ['text'] },
    { properties: { message: true }, required: ['message'] },
  ],
});
/**
 * API → agent: start a run for one user message (`text`) in one thread. With `regenerates` (a run id), `text`
 * is the thread's last user message again and the run replaces the answer of run `regenerates`: the agent drops
 * that answer from the thread's history (and the user message it answered, which it adds back as this run's
 * input), so the model sees the user message once and not the old answer. With `resume`, it continues a run that
 * paused for a tool approval (same `runId`; `text` is the run's user message again, the agent does not use it).
 *
 * The text's old field name `message` is still accepted (deprecated, for one release): a request carries exactly
 * one of `text` and `message`, and parsing always gives `text`. For that release the parsed request also answers
 * `message` (the same text, not enumerable, so never serialised).
 */
export const RunRequestSchema = OneUserTextSchema.transform(({ text, message, ...rest }) => {
  const request = { ...rest, text: (text ?? message) as string };
  // For one release a reader of the old name still finds the text. Not enumerable: JSON, spreads and key
  // listings see `text` only, so a parsed request sent on is never refused for carrying both.
  Object.defineProperty(request, 'message', {
    get(this: { text: string }) {
      return this.text;
    },
    enumerable: false,
    configurable: true,
  });
  return request as typeof request & {
    /** @deprecated use `text`; readable on a parsed request for one release, never sent. */
    readonly message?: string;
  };
});

/** The `resume` part of a run request. */
export type RunResume = z.infer<typeof RunResumeSchema>;

/** The tools reference of a run request. */
export type ToolsRef = z.infer<typeof ToolsRefSchema>;
/** A run request (API → agent) as parsed: the user text is always `text`. */
export type RunRequest = z.output<typeof RunRequestSchema>;
/** A run request as it may be sent: `text`, or for one release the deprecated `message` instead. */
export type RunRequestInput = z.input<typeof RunRequestSchema>;

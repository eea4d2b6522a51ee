import { z } from 'zod';
import { ID_PATTERN, LIMITS, TOOL_NAME_PATTERN } from './limits.js';

/**
 * JSON Schema keywords only the shipped schema files carry (see json-schema.ts), keyed by the schema they
 * describe. Kept out of zod's global metadata so that a tool manifest built from these schemas (which a model
 * sees) carries standard keywords only.
 */
export const SHIPPED_SCHEMA_EXTRAS = new WeakMap<z.ZodType, Record<string, unknown>>();

/**
 * The JSON Schema keyword that states a length limit in UTF-16 code units. JSON Schema's `maxLength` counts
 * code points and cannot express this, so the shipped schemas carry both: `maxLength` (a necessary condition:
 * a string within N UTF-16 units has at most N code points) and this keyword (the exact rule).
 */
export const MAX_UTF16_LENGTH_KEYWORD = 'x-threadline-maxUtf16Length';

/**
 * A string of at most `max` UTF-16 code units (`string.length`, what JavaScript, the DOM and `<agent-chat>`
 * count), and at least one when `min` is 1. The limit is checked on `.length` by this package, not by zod's
 * `.max()`, whose unit changed between zod releases (UTF-16 units in 4.0, code points in 4.6).
 */
export function boundedString(
  max: number,
  options: {
    min?: 0 | 1;
    pattern?: RegExp;
    patternMessage?: string;
    /** A further rule, checked after the length and the pattern. */
    refine?: { check: (value: string) => boolean; message: string };
    /** Standard JSON Schema keywords that describe `refine` (e.g. `format`). */
    jsonSchema?: Record<string, unknown>;
  } = {},
): z.ZodString {
  const min = options.min ?? 0;
  let schema = z.string().superRefine((value, ctx) => {
    if (value.length < min) {
      ctx.addIssue({
        code: 'too_small',
        origin: 'string',
        minimum: min,
        inclusive: true,
        input: value,
        message: 'must not be empty',
      });
    } else if (value.length > max) {
      ctx.addIssue({
        code: 'too_big',
        origin: 'string',
        maximum: max,
        inclusive: true,
        input: value,
        message: `must be at most ${max} characters (UTF-16 code units)`,
      });
    }
  });
  if (options.pattern) schema = schema.regex(options.pattern, options.patternMessage);
  if (options.refine) schema = schema.refine(options.refine.check, options.refine.message);
  // Metadata last: it belongs to this exact instance.
  const out = schema.meta({
    ...(min > 0 ? { minLength: min } : {}),
    maxLength: max,
    ...options.jsonSchema,
  });
  SHIPPED_SCHEMA_EXTRAS.set(out, { [MAX_UTF16_LENGTH_KEYWORD]: max });
  return out;
}

/** An id: non-empty, at most {@link LIMITS.maxIdLength} characters of letters, digits and `_ . : -`. */
export const IdSchema = boundedString(LIMITS.maxIdLength, {
  min: 1,
  pattern: ID_PATTERN,
  patternMessage: 'may contain only letters, digits and _ . : -',
});

/** A tool name such as `profile.patch`. */
export const ToolNameSchema = boundedString(LIMITS.maxToolNameLength, {
  min: 1,
  pattern: TOOL_NAME_PATTERN,
  patternMessage: 'must start with a letter and contain only letters, digits and . _ -',
});

/** Epoch milliseconds. */
export const TimestampSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** A per-thread sequence number assigned by the relay: 1, 2, 3, … */
export const SeqSchema = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** A machine-readable error code: lower snake case. */
export const CodeSchema = boundedString(LIMITS.maxCodeLength, {
  min: 1,
  pattern: /^[a-z][a-z0-9_]*$/,
  patternMessage: 'must be lower snake case',
});

/** A short human-readable label (e.g. a tool call's "Updating profile"): 1 to 200 UTF-16 code units. */
export const LabelSchema = boundedString(LIMITS.maxLabelLength, { min: 1 });
/** A human-readable error message: 1 to 4,096 UTF-16 code units, safe to show. */
export const ErrorMessageSchema = boundedString(LIMITS.maxErrorMessageLength, { min: 1 });

import { z } from 'zod';
import { ID_PATTERN, LIMITS, TOOL_NAME_PATTERN } from './limits.js';

/** An id: non-empty, at most {@link LIMITS.maxIdLength} characters of letters, digits and `_ . : -`. */
export const IdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(LIMITS.maxIdLength, `must be at most ${LIMITS.maxIdLength} characters`)
  .regex(ID_PATTERN, 'may contain only letters, digits and _ . : -');

/** A tool name such as `profile.patch`. */
export const ToolNameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(LIMITS.maxToolNameLength, `must be at most ${LIMITS.maxToolNameLength} characters`)
  .regex(TOOL_NAME_PATTERN, 'must start with a letter and contain only letters, digits and . _ -');

/** Epoch milliseconds. */
export const TimestampSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** A per-thread sequence number assigned by the relay: 1, 2, 3, … */
export const SeqSchema = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** A machine-readable error code: lower snake case. */
export const CodeSchema = z
  .string()
  .min(1)
  .max(LIMITS.maxCodeLength)
  .regex(/^[a-z][a-z0-9_]*$/, 'must be lower snake case');

/** A short human-readable label (e.g. a tool call's "Updating profile"): 1 to 200 characters. */
export const LabelSchema = z.string().min(1).max(LIMITS.maxLabelLength);
/** A human-readable error message: 1 to 4,096 characters, safe to show. */
export const ErrorMessageSchema = z.string().min(1).max(LIMITS.maxErrorMessageLength);

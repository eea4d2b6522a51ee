import { z } from 'zod';
import { LIMITS } from './limits.js';
import { boundedString, IdSchema } from './primitives.js';

/** Where and how the agent reaches the host's tools: a base URL and a short-lived act-as token. */
export const ToolsRefSchema = z.strictObject({
  baseUrl: z.url({ protocol: /^https?$/ }).max(2048),
  token: boundedString(LIMITS.maxTokenLength, { min: 1 }),
});

/** API → agent: start a run for one user message in one thread. */
export const RunRequestSchema = z.strictObject({
  threadId: IdSchema,
  runId: IdSchema,
  parentRunId: IdSchema.optional(),
  user: z.strictObject({ id: IdSchema }),
  message: boundedString(LIMITS.maxMessageLength, { min: 1 }),
  tools: ToolsRefSchema,
});

/** The tools reference of a run request. */
export type ToolsRef = z.infer<typeof ToolsRefSchema>;
/** A run request (API → agent). */
export type RunRequest = z.infer<typeof RunRequestSchema>;

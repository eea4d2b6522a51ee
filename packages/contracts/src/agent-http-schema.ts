import { z } from 'zod';
import { AGENT_HTTP_ERROR_CODES } from './agent-http.js';
import type { AgentHttpErrorCode } from './agent-http.js';
import { LIMITS } from './limits.js';
import { boundedString, ErrorMessageSchema } from './primitives.js';

/**
 * The agent service's error body, `{ error: { code, message, issues? } }` (`AgentHttpErrorBody` in
 * `@threadline/contracts/core`). Keys it does not know are allowed, so a newer service may add some; the code
 * must be one of {@link AGENT_HTTP_ERROR_CODES}.
 */
export const AgentHttpErrorBodySchema = z.object({
  error: z.object({
    code: z.enum(AGENT_HTTP_ERROR_CODES as [AgentHttpErrorCode, ...AgentHttpErrorCode[]]),
    message: ErrorMessageSchema,
    issues: z
      .array(
        z.object({
          path: boundedString(1024),
          message: boundedString(LIMITS.maxErrorMessageLength),
        }),
      )
      .max(100)
      .optional(),
  }),
});

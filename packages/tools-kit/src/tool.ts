import { LIMITS, TOOL_NAME_PATTERN } from '@threadline/contracts';
import type { AgentEvent } from '@threadline/contracts';
import type { z } from 'zod';
import { ToolsKitError } from './errors.js';

/** What a tool handler knows about the call: who it acts for, where, and how to emit events. */
export interface ToolContext {
  /** The user the act-as token was minted for (its `sub`). Never taken from the request body. */
  userId: string;
  /** The token's thread; the request's `threadId` has already been checked against it. */
  threadId: string;
  /** The run the token was minted for. */
  runId: string;
  /** Aborted when the caller goes away or the handler timeout passes. */
  signal: AbortSignal;
  /**
   * Queues a contract event for the thread's log. Events are validated here and published only after the
   * handler returns successfully, so a failed call emits nothing.
   */
  emit(event: AgentEvent): Promise<void>;
}

/** Who a `needsApproval` check is asked for: the act-as token's user, thread and run. */
export interface ApprovalCheckContext {
  userId: string;
  threadId: string;
  runId: string;
}

/**
 * Whether a call must wait for a person's approval before it runs: `true` for every call, or a check per call
 * (e.g. only above an amount). A check that throws counts as "needs approval".
 */
export type NeedsApproval<I extends z.ZodType = z.ZodType> =
  boolean | ((input: z.infer<I>, ctx: ApprovalCheckContext) => boolean | Promise<boolean>);

/** A tool as the router serves it. Create one with {@link defineTool}. */
export interface ToolDefinition<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  readonly name: string;
  readonly description: string;
  readonly input: I;
  readonly output: O;
  /** Internal tools (runtime plumbing) are listed in the manifest with `internal: true` and not offered to the model. */
  readonly internal: boolean;
  /** Whether calls wait for a person's approval (see {@link NeedsApproval}); `false` when not given. */
  readonly needsApproval: NeedsApproval<I>;
  handler(input: z.infer<I>, ctx: ToolContext): Promise<z.infer<O>> | z.infer<O>;
}

/** What {@link defineTool} accepts. */
export interface ToolDefinitionInput<I extends z.ZodType, O extends z.ZodType> {
  name: string;
  description: string;
  input: I;
  output: O;
  internal?: boolean;
  /**
   * The call waits for a person's approval (the run pauses with TOOL_APPROVAL_REQUESTED): `true`, or a
   * function of the input deciding per call.
   */
  needsApproval?: NeedsApproval<I>;
  handler(input: z.infer<I>, ctx: ToolContext): Promise<z.infer<O>> | z.infer<O>;
}

/**
 * Defines a tool: a name (letters, digits, `.`, `_`, `-`, starting with a letter), a description for the
 * model, zod schemas for input and output, and a handler. The input must be a zod object; unknown top-level
 * keys are rejected (use `z.strictObject` for nested objects too).
 * @example
 * const addNote = defineTool({
 *   name: 'notes.add',
 *   description: 'Add a note to the current thread.',
 *   input: z.strictObject({ text: z.string().min(1).max(500) }),
 *   output: z.strictObject({ id: z.string() }),
 *   async handler({ text }, ctx) { return { id: await notes.add(ctx.threadId, text) }; },
 * });
 */
export function defineTool<I extends z.ZodType, O extends z.ZodType>(
  def: ToolDefinitionInput<I, O>,
): ToolDefinition<I, O> {
  if (typeof def !== 'object' || def === null)
    throw new ToolsKitError('invalid_tool', 'defineTool needs an object');
  const { name, description } = def;
  if (typeof name !== 'string' || name.length > LIMITS.maxToolNameLength || !TOOL_NAME_PATTERN.test(name)) {
    throw new ToolsKitError(
      'invalid_tool',
      `tool name ${JSON.stringify(name)} is invalid: start with a letter, then letters, digits, ".", "_" or "-" (at most ${LIMITS.maxToolNameLength})`,
    );
  }
  if (typeof description !== 'string' || description.length === 0 || description.length > 4096) {
    throw new ToolsKitError('invalid_tool', `tool ${name}: description must be 1 to 4096 characters`);
  }
  if (!isZodObject(def.input)) {
    throw new ToolsKitError(
      'invalid_tool',
      `tool ${name}: input must be a zod object schema (z.strictObject({...}))`,
    );
  }
  if (!isZodSchema(def.output)) {
    throw new ToolsKitError('invalid_tool', `tool ${name}: output must be a zod schema`);
  }
  const needsApproval = def.needsApproval ?? false;
  if (typeof needsApproval !== 'boolean' && typeof needsApproval !== 'function')
    throw new ToolsKitError('invalid_tool', `tool ${name}: needsApproval must be a boolean or a function`);
  if (needsApproval !== false && def.internal === true)
    throw new ToolsKitError('invalid_tool', `tool ${name}: an internal tool cannot need approval`);
  if (typeof def.handler !== 'function')
    throw new ToolsKitError('invalid_tool', `tool ${name}: handler must be a function`);
  // Unknown keys must be rejected, not silently stripped: a typo in a field name is an error the caller should see.
  const input = (def.input as unknown as z.ZodObject).strict() as unknown as I;
  const handler = def.handler;
  return Object.freeze({
    name,
    description,
    input,
    output: def.output,
    internal: def.internal === true,
    needsApproval,
    handler: (value: z.infer<I>, ctx: ToolContext) => handler(value, ctx),
  });
}

// Duck-typed on purpose: `instanceof` fails when the host's zod is a different copy (ESM vs CJS build).
function isZodSchema(value: unknown): value is z.ZodType {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { safeParse?: unknown }).safeParse === 'function' &&
    '_zod' in value
  );
}

function isZodObject(value: unknown): value is z.ZodObject {
  return (
    isZodSchema(value) &&
    (value as unknown as z.ZodObject)._zod.def.type === 'object' &&
    typeof (value as z.ZodObject).strict === 'function'
  );
}

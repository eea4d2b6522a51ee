import {
  AgentEventSchema,
  EVENT_TYPES,
  JsonObjectSchema,
  JsonValueSchema,
  createStateChangedEvent,
  safeParse,
} from '@threadline/contracts';
import type { AgentEvent, EventType, JsonValue } from '@threadline/contracts';
import { z } from 'zod';
import { ToolFailure } from './errors.js';
import type { ToolStore } from './store.js';
import { defineTool, type ToolDefinition } from './tool.js';

/** Names of the built-in tools every router serves. */
export const BUILTIN_TOOLS = {
  sessionGet: 'session.get',
  sessionAdd: 'session.add',
  sessionPop: 'session.pop',
  sessionClear: 'session.clear',
  profilePatch: 'profile.patch',
  eventsAppend: 'events.append',
  /** Backs `GET /state`; also callable as a tool so the model can read state on demand. */
  stateGet: 'state.get',
} as const;
/** The name of a built-in tool. */
export type BuiltinToolName = (typeof BUILTIN_TOOLS)[keyof typeof BUILTIN_TOOLS];

/** Most session items one `session.add` call may carry, and most one `session.get` returns. */
export const MAX_SESSION_ITEMS_PER_CALL = 1000;

/** The profile fields `profile.patch` accepts unless the host passes its own `profileSchema`. */
export const DefaultProfileSchema = z.strictObject({
  displayName: z.string().trim().min(1).max(80).describe("The user's display name."),
  locale: z
    .string()
    .regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$/, 'must be a BCP 47 language tag such as en or pt-BR')
    .describe('Preferred language, a BCP 47 tag such as en or pt-BR.'),
  timezone: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9_+\-/]+$/, 'must be an IANA time zone such as Europe/Paris')
    .describe('IANA time zone such as Europe/Paris.'),
});

/**
 * Event types `events.append` accepts by default. Run lifecycle events (RUN_STARTED, RUN_FINISHED,
 * RUN_ERROR) belong to the relay and runner, and USER_MESSAGE would let a tool speak as the user.
 */
export const DEFAULT_APPENDABLE_EVENT_TYPES: readonly EventType[] = [
  'STATE_CHANGED',
  'TOOL_CALL_STARTED',
  'TOOL_CALL_RESULT',
  'TEXT_MESSAGE_CHUNK',
];

/** What the built-ins need from the router. */
export interface BuiltinToolsOptions {
  store: ToolStore;
  state?: ((ctx: { userId: string; threadId: string }) => Promise<Record<string, JsonValue>>) | undefined;
  profileSchema?: z.ZodObject | undefined;
  /** Whether an event sink exists; without one `events.append` is not served. */
  withEvents: boolean;
  appendableEventTypes?: readonly EventType[] | undefined;
}

const Empty = z.strictObject({});
const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

/** Builds the built-in tools over a store. Each one commits with a single store write, so it is all or nothing. */
export function createBuiltinTools(options: BuiltinToolsOptions): ToolDefinition[] {
  const { store } = options;
  const profileSchema = options.profileSchema ?? DefaultProfileSchema;
  const profileShape = profileSchema.shape as Record<string, z.ZodType>;
  const profileKeys = Object.keys(profileShape);
  const patchShape: Record<string, z.ZodType> = {};
  for (const key of profileKeys) patchShape[key] = (profileShape[key] as z.ZodType).optional();
  const ProfilePatchSchema = z.strictObject({
    ...patchShape,
    unset: z
      .array(z.enum(profileKeys as [string, ...string[]]))
      .max(profileKeys.length)
      .optional()
      .describe('Fields to remove from the profile.'),
  });
  const appendable = new Set(options.appendableEventTypes ?? DEFAULT_APPENDABLE_EVENT_TYPES);

  const tools: ToolDefinition[] = [
    defineTool({
      name: BUILTIN_TOOLS.stateGet,
      description: "Read the current state for this thread (by default the user's profile).",
      input: Empty,
      output: JsonObjectSchema,
      async handler(_input, ctx) {
        if (options.state) return options.state({ userId: ctx.userId, threadId: ctx.threadId });
        return { profile: await store.getProfile(ctx.userId) };
      },
    }),
    defineTool({
      name: BUILTIN_TOOLS.sessionGet,
      description:
        "Read the thread's agent session items, oldest first: the newest `limit` (default 1000). `more` is true when older items exist.",
      internal: true,
      input: z.strictObject({ limit: z.number().int().min(1).max(MAX_SESSION_ITEMS_PER_CALL).optional() }),
      output: z.strictObject({ items: z.array(JsonValueSchema), more: z.boolean() }),
      async handler({ limit }, ctx) {
        const n = limit ?? MAX_SESSION_ITEMS_PER_CALL;
        // One read of n + 1 tells whether older items exist without a second query or a store count.
        const items = await store.getSessionItems(ctx.threadId, n + 1);
        const more = items.length > n;
        return { items: more ? items.slice(items.length - n) : items, more };
      },
    }),
    defineTool({
      name: BUILTIN_TOOLS.sessionAdd,
      description: "Append items to the thread's agent session, all or none.",
      internal: true,
      input: z.strictObject({ items: z.array(JsonValueSchema).max(MAX_SESSION_ITEMS_PER_CALL) }),
      output: z.strictObject({ count: z.number().int().nonnegative() }),
      async handler({ items }, ctx) {
        if (items.length > 0) await store.addSessionItems(ctx.threadId, items);
        return { count: items.length };
      },
    }),
    defineTool({
      name: BUILTIN_TOOLS.sessionPop,
      description: "Remove and return the newest item of the thread's agent session (null when empty).",
      internal: true,
      input: Empty,
      output: z.strictObject({ item: JsonValueSchema }),
      async handler(_input, ctx) {
        return { item: await store.popSessionItem(ctx.threadId) };
      },
    }),
    defineTool({
      name: BUILTIN_TOOLS.sessionClear,
      description: "Remove every item of the thread's agent session.",
      internal: true,
      input: Empty,
      output: Empty,
      async handler(_input, ctx) {
        await store.clearSession(ctx.threadId);
        return {};
      },
    }),
    defineTool({
      name: BUILTIN_TOOLS.profilePatch,
      description:
        "Update some fields of the user's profile; fields left out stay as they are. List fields in `unset` to remove them.",
      input: ProfilePatchSchema,
      output: z.strictObject({ profile: JsonObjectSchema }),
      async handler(input, ctx) {
        const { unset, ...set } = input as Record<string, JsonValue> & { unset?: string[] };
        const both = (unset ?? []).filter((key) => key in set);
        if (both.length > 0) {
          throw new ToolFailure('invalid_input', 'a field cannot be both set and unset', {
            issues: both.map((key) => ({ path: `unset`, message: `"${key}" is also set` })),
          });
        }
        const patch: Record<string, JsonValue> = { ...set };
        for (const key of unset ?? []) patch[key] = null;
        const profile = await store.patchProfile(ctx.userId, patch);
        await ctx.emit(
          createStateChangedEvent({
            threadId: ctx.threadId,
            runId: ctx.runId,
            scope: 'profile',
            value: profile,
          }),
        );
        return { profile };
      },
    }),
  ];

  if (options.withEvents) {
    tools.push(
      defineTool({
        name: BUILTIN_TOOLS.eventsAppend,
        description:
          "Append a contract event to this thread's log. threadId, runId and ts are filled in from the token and the clock.",
        internal: true,
        input: z.strictObject({ event: JsonObjectSchema }),
        output: Empty,
        async handler({ event }, ctx) {
          if (event.threadId !== undefined && event.threadId !== ctx.threadId) {
            throw new ToolFailure(
              'thread_mismatch',
              'an event may be appended to the token’s own thread only',
            );
          }
          if (event.runId !== undefined && event.runId !== ctx.runId) {
            throw new ToolFailure('forbidden', 'an event may be appended to the token’s own run only');
          }
          if (
            typeof event.type === 'string' &&
            KNOWN_TYPES.has(event.type) &&
            !appendable.has(event.type as EventType)
          ) {
            throw new ToolFailure('forbidden', `events of type ${event.type} cannot be appended by a tool`);
          }
          const full = { ...event, threadId: ctx.threadId, runId: ctx.runId, ts: event.ts ?? Date.now() };
          const parsed = safeParse(AgentEventSchema, full, 'event');
          if (!parsed.ok) {
            throw new ToolFailure('invalid_input', parsed.error.message, {
              issues: parsed.error.issues.map((i) => ({
                path: i.path === '' ? 'event' : `event.${i.path}`,
                message: i.message,
              })),
            });
          }
          await ctx.emit(parsed.value as AgentEvent);
          return {};
        },
      }),
    );
  }
  return tools;
}

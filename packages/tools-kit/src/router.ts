import { randomUUID } from 'node:crypto';
import type { EventType, JsonValue, ToolManifest } from '@threadline/contracts';
import type { z } from 'zod';
import { createApprovalRules } from './approvals.js';
import type { ToolApprovals } from './approvals.js';
import { createAuthenticator } from './auth.js';
import { listTools, readState, runState } from './builtin-endpoints.js';
import { createBuiltinTools } from './builtins.js';
import type { RouterContext } from './context.js';
import { ToolsKitError } from './errors.js';
import { createExecutor } from './execute.js';
import { IdempotentCalls } from './idempotency.js';
import { toManifestEntry } from './manifest.js';
import { ManifestVariants } from './manifest-etag.js';
import { intOption } from './options.js';
import { Reject, fail } from './responses.js';
import { TOOL_ROUTES, matchToolRoute } from './routes.js';
import type { EventSink, ToolStore } from './store.js';
import { callTool, checkApproval } from './tool-endpoints.js';
import type { ToolDefinition } from './tool.js';
import type { TokenIssuer } from './tokens.js';

/** Options of {@link createToolRouter}. */
export interface ToolRouterOptions {
  /** The host's own tools, served next to the built-ins. */
  tools?: readonly ToolDefinition[];
  /** Verifies act-as tokens (a {@link TokenIssuer}). */
  tokens: Pick<TokenIssuer, 'verify'>;
  /** Storage of the built-in tools and of idempotent results. */
  store: ToolStore;
  /** Where emitted events go. Without it `events.append` is not served and emitted events are dropped with a warning. */
  events?: EventSink;
  /**
   * Whether the token's run is still running. When given, every call (tools, `/state`, `/tools`) whose token
   * names a run that has ended (or never existed) is refused with 403 `run_not_active` before anything runs,
   * so a token dies with its run instead of living out its lifetime. Wire it to the relay's store, e.g.
   * `async ({ runId, threadId }) => { const r = await store.getRun(runId); return r?.status === 'running' && r.threadId === threadId; }`.
   * A throw answers 503 `unavailable`.
   */
  isRunActive?: (run: { runId: string; threadId: string; userId: string }) => boolean | Promise<boolean>;
  /**
   * Where the router looks up a person's decision before it runs a tool that needs approval
   * (`needsApproval: true`, or a check that answers true for the call). Such a call must carry its tool
   * call id as its idempotency key (the agent sends the SDK's call id) and runs only if `isApproved` answers
   * true for that token's thread, run and call id; otherwise it is refused with 403 `approval_required` and
   * the handler never runs. Without this option every call of such a tool is refused. A throw answers 503
   * `unavailable`. The reference host answers from the thread's log (an approved TOOL_APPROVAL_RESOLVED of
   * the same run and call id).
   */
  approvals?: ToolApprovals;
  /** What `GET /state` returns; default `{ profile }`. */
  state?: (ctx: { userId: string; threadId: string }) => Promise<Record<string, JsonValue>>;
  /** Largest request body accepted, in bytes. Default 65,536. */
  maxBodyBytes?: number;
  /** Where internal errors are logged with their reference id. Default `console`. */
  logger?: Pick<Console, 'error' | 'warn'>;
  /** A path prefix the routes live under, e.g. `/api`. Default none. */
  basePath?: string;
  /** How long the request body may take to arrive (slow or stalled clients get 408). Default 10,000 ms. */
  bodyTimeoutMs?: number;
  /** How long a handler may run before the call answers `timeout` (504) and its signal aborts. Default 30,000 ms. */
  handlerTimeoutMs?: number;
  /** Most events one call may emit. Default 100. */
  maxEventsPerCall?: number;
  /** The profile fields `profile.patch` accepts. Default {@link DefaultProfileSchema}. */
  profileSchema?: z.ZodObject;
  /** Event types `events.append` accepts. Default {@link DEFAULT_APPENDABLE_EVENT_TYPES}. */
  appendableEventTypes?: readonly EventType[];
  /**
   * Largest body of `PUT /run-state` (a paused run's saved state, its history included), in bytes.
   * Default 8 MiB.
   */
  maxRunStateBytes?: number;
}

/**
 * A Fetch-API handler serving `POST /tools/:name`, `GET /state?threadId=` and `GET /tools`. It never
 * throws: every outcome is a tool result envelope with the matching status.
 */
export type ToolRouter = ((request: Request) => Promise<Response>) & {
  /** Every tool name served, built-ins included: mint tokens with these. */
  readonly toolNames: string[];
  /** The body limit, so adapters can stop reading early. */
  readonly maxBodyBytes: number;
  /** The full manifest (unfiltered). */
  readonly manifest: ToolManifest;
  /** The path prefix the routes live under (`''` for none). */
  readonly basePath: string;
  /** The body read deadline, so adapters that buffer the body apply the same bound. */
  readonly bodyTimeoutMs: number;
  /** The body limit of `PUT /run-state`. */
  readonly maxRunStateBytes: number;
};

/**
 * Creates the tool router: strict input validation, act-as token checks (thread, user and tool scope),
 * idempotency, body limits and structured results for the host's tools and the built-ins.
 * @example
 * const router = createToolRouter({ tools: [addNote], tokens, store: new MemoryToolStore() });
 * app.use(toolRouterMiddleware(router)); // or: export default { fetch: router }
 */
export function createToolRouter(options: ToolRouterOptions): ToolRouter {
  if (typeof options !== 'object' || options === null)
    throw new ToolsKitError('invalid_options', 'createToolRouter needs options');
  if (!options.tokens || typeof options.tokens.verify !== 'function') {
    throw new ToolsKitError(
      'invalid_options',
      'tokens must have a verify(token) method (use createTokenIssuer)',
    );
  }
  if (!options.store)
    throw new ToolsKitError('invalid_options', 'store is required (e.g. new MemoryToolStore())');
  const maxBodyBytes = intOption(options.maxBodyBytes, 65_536, 64, 64 * 1024 * 1024, 'maxBodyBytes');
  const bodyTimeoutMs = intOption(options.bodyTimeoutMs, 10_000, 1, 600_000, 'bodyTimeoutMs');
  const handlerTimeoutMs = intOption(options.handlerTimeoutMs, 30_000, 1, 3_600_000, 'handlerTimeoutMs');
  const maxRunStateBytes = intOption(
    options.maxRunStateBytes,
    8 * 1024 * 1024,
    64,
    16 * 1024 * 1024,
    'maxRunStateBytes',
  );
  const maxEventsPerCall = intOption(options.maxEventsPerCall, 100, 1, 10_000, 'maxEventsPerCall');
  const basePath = normaliseBasePath(options.basePath);
  const logger = options.logger ?? console;
  const { store, tokens, events } = options;
  if (options.isRunActive !== undefined && typeof options.isRunActive !== 'function')
    throw new ToolsKitError('invalid_options', 'isRunActive must be a function');
  const isRunActive = options.isRunActive;
  if (
    options.approvals !== undefined &&
    (typeof options.approvals !== 'object' ||
      options.approvals === null ||
      typeof options.approvals.isApproved !== 'function')
  )
    throw new ToolsKitError('invalid_options', 'approvals must have an isApproved(call) method');
  const approvals = options.approvals;

  const builtins = createBuiltinTools({
    store,
    state: options.state,
    profileSchema: options.profileSchema,
    withEvents: events !== undefined,
    appendableEventTypes: options.appendableEventTypes,
  });
  const registry = new Map<string, ToolDefinition>();
  for (const tool of [...builtins, ...(options.tools ?? [])]) {
    if (!tool || typeof tool.handler !== 'function' || typeof tool.name !== 'string') {
      throw new ToolsKitError('invalid_tool', 'tools must be created with defineTool()');
    }
    if (registry.has(tool.name))
      throw new ToolsKitError('duplicate_tool', `a tool named ${tool.name} is already registered`);
    registry.set(tool.name, tool);
  }
  const manifestEntries = [...registry.values()].map(toManifestEntry);
  if (!approvals && manifestEntries.some((e) => e.needsApproval !== undefined))
    logger.warn(
      '[tools-kit] some tools need approval but createToolRouter got no `approvals` check: every call of them is refused (approval_required)',
    );
  const manifestVariants = new ManifestVariants(manifestEntries);
  const ctx: RouterContext = {
    registry,
    store,
    maxBodyBytes,
    bodyTimeoutMs,
    maxRunStateBytes,
    manifestVariants,
    authenticate: createAuthenticator({ tokens, isRunActive, logger }),
    execute: createExecutor({ handlerTimeoutMs, maxEventsPerCall, events, logger }),
    approvals: createApprovalRules(approvals, logger),
    idempotent: new IdempotentCalls(store),
  };

  async function route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    let path = url.pathname;
    if (basePath !== '') {
      if (path !== basePath && !path.startsWith(`${basePath}/`))
        return fail(new Reject('not_found', 'no such route'));
      path = path.slice(basePath.length);
    }
    const method = request.method.toUpperCase();
    const matched = matchToolRoute(path);
    switch (matched?.kind) {
      case 'manifest':
      case 'state':
        if (method !== 'GET')
          return fail(new Reject('method_not_allowed', `use GET ${path}`, undefined, { allow: 'GET' }));
        return matched.kind === 'manifest' ? listTools(ctx, request, url) : readState(ctx, request, url);
      case 'run-state':
        if (method !== 'GET' && method !== 'PUT' && method !== 'DELETE')
          return fail(
            new Reject('method_not_allowed', `use GET, PUT or DELETE ${TOOL_ROUTES.runState}`, undefined, {
              allow: 'GET, PUT, DELETE',
            }),
          );
        return runState(ctx, request, url, method);
      case 'needs-approval':
        if (matched.name === undefined) return fail(new Reject('not_found', 'no such tool'));
        if (method !== 'POST')
          return fail(new Reject('method_not_allowed', 'use POST', undefined, { allow: 'POST' }));
        return checkApproval(ctx, request, matched.name);
      case 'call':
        if (matched.name === undefined) return fail(new Reject('not_found', 'no such tool'));
        if (method !== 'POST')
          return fail(
            new Reject('method_not_allowed', 'call a tool with POST', undefined, { allow: 'POST' }),
          );
        return callTool(ctx, request, matched.name);
      default:
        return fail(new Reject('not_found', 'no such route'));
    }
  }

  const handler = async (request: Request): Promise<Response> => {
    try {
      return await route(request);
    } catch (error) {
      const ref = randomUUID();
      logger.error(`[tools-kit] request failed (ref ${ref})`, error);
      return fail(
        new Reject('internal_error', `internal error; reference ${ref}`, undefined, { 'x-error-ref': ref }),
      );
    }
  };
  return Object.assign(handler, {
    toolNames: [...registry.keys()],
    maxBodyBytes,
    manifest: { tools: manifestEntries },
    basePath,
    bodyTimeoutMs,
    maxRunStateBytes,
  });
}

function normaliseBasePath(value: string | undefined): string {
  if (value === undefined || value === '' || value === '/') return '';
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(value))
    throw new ToolsKitError('invalid_options', 'basePath must start with "/" and be a plain path');
  return value.replace(/\/+$/, '');
}

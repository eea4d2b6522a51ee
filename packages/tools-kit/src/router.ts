import { createHash, randomUUID } from 'node:crypto';
import {
  ActAsClaimsSchema,
  AgentEventSchema,
  IdSchema,
  LIMITS,
  findNonJson,
  formatPath,
  safeParse,
  toContractIssues,
} from '@threadline/contracts';
import type {
  ActAsClaims,
  AgentEvent,
  EventType,
  JsonValue,
  ToolManifest,
  ToolManifestEntry,
  ToolResult,
} from '@threadline/contracts';
import { z } from 'zod';
import { BUILTIN_TOOLS, createBuiltinTools } from './builtins.js';
import { ToolCallError, ToolsKitError } from './errors.js';
import { ManifestVariants, ifNoneMatchHits } from './manifest-etag.js';
import { intOption } from './options.js';
import { MANIFEST_HEADERS, Reject, fail, json } from './responses.js';
import type { EventSink, ToolStore } from './store.js';
import type { ToolContext, ToolDefinition } from './tool.js';
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

/** A call of a tool that needs approval, as {@link ToolApprovals.isApproved} sees it. */
export interface ToolApprovalCall {
  /** From the act-as token. */
  userId: string;
  threadId: string;
  runId: string;
  /** The call's idempotency key: the tool call id the decision names. */
  toolCallId: string;
  toolName: string;
  /** The call's input as validated by the tool's schema. */
  input: unknown;
}

/** The host's record of approval decisions (see {@link ToolRouterOptions.approvals}). */
export interface ToolApprovals {
  /** True only when the thread's owner approved exactly this call (same thread, run and tool call id). */
  isApproved(call: ToolApprovalCall): boolean | Promise<boolean>;
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

const RunStateBodySchema = z.strictObject({
  threadId: IdSchema,
  state: z.string().min(1),
});

const BodySchema = z.strictObject({
  threadId: IdSchema,
  input: z.unknown().optional(),
  idempotencyKey: IdSchema.optional(),
});

/** Bodies nested deeper than this are refused before any schema looks at them (schemas recurse). */
const MAX_BODY_DEPTH = LIMITS.maxJsonDepth + 8;

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
  const inflight = new Map<
    string,
    Promise<{ fingerprint: string; result: ToolResult | Reject; replay: boolean }>
  >();
  let warnedNoSink = false;

  async function authenticate(request: Request): Promise<ActAsClaims | Reject> {
    const header = request.headers.get('authorization');
    if (header === null || header.trim() === '')
      return new Reject('token_missing', 'send Authorization: Bearer <act-as token>');
    const match = /^Bearer +([A-Za-z0-9._~+/=-]+)$/i.exec(header.trim());
    if (!match?.[1])
      return new Reject('token_invalid', 'the Authorization header must be "Bearer <act-as token>"');
    let claims: unknown;
    try {
      claims = await tokens.verify(match[1]);
    } catch (error) {
      if (error instanceof ToolsKitError && error.code === 'token_expired')
        return new Reject('token_expired', error.message);
      if (error instanceof ToolsKitError && error.code === 'token_invalid')
        return new Reject('token_invalid', error.message);
      logger.warn('[tools-kit] token verification failed with an unexpected error', error);
      return new Reject('token_invalid', 'token could not be verified');
    }
    // A custom verifier may hand back anything; scope decisions below rely on these shapes.
    const parsed = safeParse(ActAsClaimsSchema, claims, 'token claims');
    if (!parsed.ok) return new Reject('token_invalid', 'token claims are malformed');
    if (isRunActive) {
      const run = { runId: parsed.value.run, threadId: parsed.value.thread, userId: parsed.value.sub };
      let active: boolean;
      try {
        active = (await isRunActive(run)) === true;
      } catch (error) {
        logger.warn('[tools-kit] isRunActive failed; refusing the call', error);
        return new Reject('unavailable', 'could not check that the run is still running; try again');
      }
      if (!active) return new Reject('run_not_active', 'this token’s run is no longer running');
    }
    return parsed.value;
  }

  async function execute(
    tool: ToolDefinition,
    input: unknown,
    claims: ActAsClaims,
    outer: AbortSignal,
  ): Promise<ToolResult | Reject> {
    const controller = new AbortController();
    const queued: AgentEvent[] = [];
    const onOuterAbort = () => controller.abort(new ToolCallError('aborted', 'the caller went away'));
    if (outer.aborted) onOuterAbort();
    else outer.addEventListener('abort', onOuterAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ctx: ToolContext = {
      userId: claims.sub,
      threadId: claims.thread,
      runId: claims.run,
      signal: controller.signal,
      async emit(event) {
        const parsed = safeParse(AgentEventSchema, event, 'event');
        if (!parsed.ok)
          throw new ToolsKitError('invalid_event', `tool ${tool.name} emitted ${parsed.error.message}`, {
            cause: parsed.error,
          });
        if (parsed.value.threadId !== claims.thread)
          throw new ToolCallError('thread_mismatch', 'a tool may emit events to its own thread only');
        if (queued.length >= maxEventsPerCall)
          throw new ToolsKitError(
            'limit_exceeded',
            `a tool call may emit at most ${maxEventsPerCall} events`,
          );
        queued.push(parsed.value);
      },
    };
    try {
      const aborted = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            controller.abort(
              new ToolCallError('timeout', `tool ${tool.name} did not finish within ${handlerTimeoutMs} ms`),
            ),
          handlerTimeoutMs,
        );
        controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
      });
      aborted.catch(() => {});
      const output = await Promise.race([Promise.resolve().then(() => tool.handler(input, ctx)), aborted]);
      const checked = safeParse(tool.output, output, `${tool.name} output`);
      if (!checked.ok)
        throw new ToolsKitError(
          'invalid_value',
          `tool ${tool.name} returned output that does not match its schema: ${checked.error.message}`,
        );
      const nonJson = findNonJson(checked.value);
      if (nonJson)
        throw new ToolsKitError(
          'invalid_value',
          `tool ${tool.name} returned a non-JSON value: ${nonJson.reason}`,
        );
      // Events go out only once the handler has succeeded: a call that fails part-way emits nothing.
      if (queued.length > 0) {
        if (events) for (const event of queued) await events.emit(event);
        else if (!warnedNoSink) {
          warnedNoSink = true;
          logger.warn(
            '[tools-kit] a tool emitted events but the router has no `events` sink; they are dropped',
          );
        }
      }
      return { ok: true, data: checked.value };
    } catch (error) {
      if (error instanceof ToolCallError) return new Reject(error.errorCode, error.message, error.issues);
      if (error instanceof ToolsKitError && error.code === 'limit_exceeded')
        return new Reject('conflict', error.message);
      // Output/event bugs are the host's: they are internal errors, not the caller's fault.
      const ref = randomUUID();
      logger.error(`[tools-kit] tool ${tool.name} failed (ref ${ref})`, error);
      return new Reject('internal_error', `internal error; reference ${ref}`, undefined, {
        'x-error-ref': ref,
      });
    } finally {
      clearTimeout(timer);
      outer.removeEventListener('abort', onOuterAbort);
    }
  }

  async function callTool(request: Request, name: string): Promise<Response> {
    const auth = await authenticate(request);
    if (auth instanceof Reject) return fail(auth);
    const tool = registry.get(name);
    if (!tool)
      return fail(
        new Reject('not_found', `no tool named ${JSON.stringify(name.slice(0, LIMITS.maxToolNameLength))}`),
      );
    if (!auth.tools.includes(name))
      return fail(new Reject('tool_not_allowed', `this token does not allow ${name}`));

    const contentType = request.headers.get('content-type');
    if (contentType !== null && !isJsonMediaType(contentType)) {
      return fail(new Reject('unsupported_media_type', 'send the body as application/json'));
    }
    const body = await readJsonBody(request, maxBodyBytes, bodyTimeoutMs);
    if (body instanceof Reject) return fail(body);
    const envelope = safeParse(BodySchema, body, 'request body');
    if (!envelope.ok) return fail(new Reject('invalid_input', envelope.error.message, envelope.error.issues));
    const headerKey = request.headers.get('idempotency-key');
    let idempotencyKey = envelope.value.idempotencyKey;
    if (headerKey !== null) {
      const key = safeParse(IdSchema, headerKey, 'Idempotency-Key');
      if (!key.ok)
        return fail(
          new Reject('invalid_input', key.error.message, [
            { path: 'Idempotency-Key', message: key.error.issues[0]?.message ?? 'invalid' },
          ]),
        );
      if (idempotencyKey !== undefined && idempotencyKey !== key.value) {
        return fail(
          new Reject('invalid_input', 'the Idempotency-Key header and body idempotencyKey differ', [
            { path: 'idempotencyKey', message: 'differs from the header' },
          ]),
        );
      }
      idempotencyKey = key.value;
    }
    if (envelope.value.threadId !== auth.thread)
      return fail(new Reject('thread_mismatch', 'this token is for another thread'));

    const input = validateInput(tool, envelope.value.input === undefined ? {} : envelope.value.input);
    if (input instanceof Reject) return fail(input);
    if (tool.needsApproval !== undefined && tool.needsApproval !== false) {
      const refusal = await checkApproved(tool, input.value, auth, idempotencyKey);
      if (refusal) return fail(refusal);
    }

    if (idempotencyKey === undefined) return respond(await execute(tool, input.value, auth, request.signal));
    const storeKey = `tools-kit:idem:${JSON.stringify([auth.sub, auth.thread, name, idempotencyKey])}`;
    const fingerprint = fingerprintOf(input.value);
    // A duplicate arriving while the first call still runs waits for it instead of writing a second time.
    const running = inflight.get(storeKey);
    if (running) {
      const first = await running;
      if (first.fingerprint !== fingerprint)
        return fail(new Reject('conflict', 'this idempotency key was used with a different input'));
      return !(first.result instanceof Reject) && first.result.ok
        ? replayed(first.result)
        : respond(first.result);
    }
    const work = (async (): Promise<{
      fingerprint: string;
      result: ToolResult | Reject;
      replay: boolean;
    }> => {
      const stored = await store.getIdempotent(storeKey);
      if (stored !== null) return { fingerprint, result: fromStored(stored, fingerprint), replay: true };
      const result = await execute(tool, input.value, auth, request.signal);
      if (result instanceof Reject || !result.ok) return { fingerprint, result, replay: false };
      // Only successes are kept: a failed call wrote nothing, so retrying it with the same key is safe.
      const kept = await store.putIdempotent(storeKey, { fingerprint, data: result.data as JsonValue });
      return { fingerprint, result: fromStored(kept, fingerprint), replay: false };
    })();
    inflight.set(storeKey, work);
    try {
      const { result, replay } = await work;
      return replay && !(result instanceof Reject) ? replayed(result) : respond(result);
    } finally {
      inflight.delete(storeKey);
    }
  }

  async function readState(request: Request, url: URL): Promise<Response> {
    const auth = await authenticate(request);
    if (auth instanceof Reject) return fail(auth);
    if (!auth.tools.includes(BUILTIN_TOOLS.stateGet))
      return fail(new Reject('tool_not_allowed', `this token does not allow ${BUILTIN_TOOLS.stateGet}`));
    const threadIds = url.searchParams.getAll('threadId');
    if (threadIds.length !== 1) {
      return fail(
        new Reject('invalid_input', 'pass exactly one threadId query parameter', [
          { path: 'threadId', message: 'required once' },
        ]),
      );
    }
    const threadId = safeParse(IdSchema, threadIds[0], 'threadId');
    if (!threadId.ok)
      return fail(
        new Reject(
          'invalid_input',
          threadId.error.message,
          threadId.error.issues.map((i) => ({ ...i, path: 'threadId' })),
        ),
      );
    if (threadId.value !== auth.thread)
      return fail(new Reject('thread_mismatch', 'this token is for another thread'));
    const tool = registry.get(BUILTIN_TOOLS.stateGet) as ToolDefinition;
    return respond(await execute(tool, {}, auth, request.signal));
  }

  /**
   * `POST /needs-approval/:name` with `{ threadId, input }`: whether this call of a tool with a
   * `needsApproval` check must wait for a person. Same checks as a call (token, scope, thread, input); the tool
   * does not run. A check that throws answers `true`.
   */
  async function checkApproval(request: Request, name: string): Promise<Response> {
    const auth = await authenticate(request);
    if (auth instanceof Reject) return fail(auth);
    const tool = registry.get(name);
    if (!tool) return fail(new Reject('not_found', 'no such tool'));
    if (!auth.tools.includes(name))
      return fail(new Reject('tool_not_allowed', `this token does not allow ${name}`));
    const contentType = request.headers.get('content-type');
    if (contentType !== null && !isJsonMediaType(contentType))
      return fail(new Reject('unsupported_media_type', 'send the body as application/json'));
    const body = await readJsonBody(request, maxBodyBytes, bodyTimeoutMs);
    if (body instanceof Reject) return fail(body);
    const envelope = safeParse(BodySchema, body, 'request body');
    if (!envelope.ok) return fail(new Reject('invalid_input', envelope.error.message, envelope.error.issues));
    if (envelope.value.threadId !== auth.thread)
      return fail(new Reject('thread_mismatch', 'this token is for another thread'));
    const input = validateInput(tool, envelope.value.input === undefined ? {} : envelope.value.input);
    if (input instanceof Reject) return fail(input);
    return json(200, { ok: true, data: { needsApproval: await needsApprovalFor(tool, input.value, auth) } });
  }

  /** Whether this call of `tool` must wait for a person. A check that throws answers true (fail closed). */
  async function needsApprovalFor(tool: ToolDefinition, input: unknown, auth: ActAsClaims): Promise<boolean> {
    const rule = tool.needsApproval;
    if (typeof rule !== 'function') return rule === true;
    try {
      return (await rule(input, { userId: auth.sub, threadId: auth.thread, runId: auth.run })) !== false;
    } catch (error) {
      logger.warn(`[tools-kit] the needsApproval check of ${tool.name} failed; asking for approval`, error);
      return true;
    }
  }

  /**
   * Refuses a call that needs approval unless the host holds an approved decision for exactly this call (the
   * token's thread and run, the idempotency key as tool call id). Null when the call may run.
   */
  async function checkApproved(
    tool: ToolDefinition,
    input: unknown,
    auth: ActAsClaims,
    toolCallId: string | undefined,
  ): Promise<Reject | null> {
    if (!(await needsApprovalFor(tool, input, auth))) return null;
    const required = `${tool.name} needs a person’s approval`;
    if (!approvals) return new Reject('approval_required', `${required}; this host records no decisions`);
    if (toolCallId === undefined)
      return new Reject(
        'approval_required',
        `${required}: send the approved tool call id as the Idempotency-Key`,
      );
    let approved: boolean;
    try {
      approved =
        (await approvals.isApproved({
          userId: auth.sub,
          threadId: auth.thread,
          runId: auth.run,
          toolCallId,
          toolName: tool.name,
          input,
        })) === true;
    } catch (error) {
      logger.warn('[tools-kit] approvals.isApproved failed; refusing the call', error);
      return new Reject('unavailable', 'could not check the approval of this call; try again');
    }
    return approved
      ? null
      : new Reject('approval_required', `${required}: no approved decision for this call of this run`);
  }

  /**
   * `GET|PUT|DELETE /run-state?threadId=`: the saved state of the token's run, paused for a tool approval
   * (the agent service keeps nothing itself). Scoped to the act-as token's thread and run.
   */
  async function runState(request: Request, url: URL, method: string): Promise<Response> {
    const auth = await authenticate(request);
    if (auth instanceof Reject) return fail(auth);
    if (method === 'PUT') {
      const contentType = request.headers.get('content-type');
      if (contentType !== null && !isJsonMediaType(contentType))
        return fail(new Reject('unsupported_media_type', 'send the body as application/json'));
      const body = await readJsonBody(request, maxRunStateBytes, bodyTimeoutMs);
      if (body instanceof Reject) return fail(body);
      const parsed = safeParse(RunStateBodySchema, body, 'request body');
      if (!parsed.ok) return fail(new Reject('invalid_input', parsed.error.message, parsed.error.issues));
      if (parsed.value.threadId !== auth.thread)
        return fail(new Reject('thread_mismatch', 'this token is for another thread'));
      await store.putRunState(auth.thread, auth.run, parsed.value.state);
      return json(200, { ok: true, data: { saved: true } });
    }
    const threadIds = url.searchParams.getAll('threadId');
    if (threadIds.length !== 1)
      return fail(
        new Reject('invalid_input', 'pass exactly one threadId query parameter', [
          { path: 'threadId', message: 'required once' },
        ]),
      );
    if (threadIds[0] !== auth.thread)
      return fail(new Reject('thread_mismatch', 'this token is for another thread'));
    if (method === 'DELETE') {
      await store.deleteRunState(auth.thread, auth.run);
      return json(200, { ok: true, data: { deleted: true } });
    }
    return json(200, { ok: true, data: { state: await store.getRunState(auth.thread, auth.run) } });
  }

  async function listTools(request: Request, url: URL): Promise<Response> {
    const auth = await authenticate(request);
    if (auth instanceof Reject) return fail(auth);
    const threadIds = url.searchParams.getAll('threadId');
    if (threadIds.length > 1)
      return fail(
        new Reject('invalid_input', 'pass at most one threadId', [{ path: 'threadId', message: 'repeated' }]),
      );
    if (threadIds.length === 1 && threadIds[0] !== auth.thread)
      return fail(new Reject('thread_mismatch', 'this token is for another thread'));
    // An ETag lets an agent keep the manifest between runs and revalidate it without the body.
    const variant = manifestVariants.for(auth.tools);
    const headers = { ...MANIFEST_HEADERS, etag: variant.etag };
    if (ifNoneMatchHits(request.headers.get('if-none-match'), variant.etag))
      return new Response(null, { status: 304, headers });
    return new Response(variant.body, { status: 200, headers });
  }

  async function route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    let path = url.pathname;
    if (basePath !== '') {
      if (path !== basePath && !path.startsWith(`${basePath}/`))
        return fail(new Reject('not_found', 'no such route'));
      path = path.slice(basePath.length);
    }
    const method = request.method.toUpperCase();
    if (path === '/tools' || path === '/state') {
      if (method !== 'GET')
        return fail(new Reject('method_not_allowed', `use GET ${path}`, undefined, { allow: 'GET' }));
      return path === '/tools' ? listTools(request, url) : readState(request, url);
    }
    if (path === '/run-state') {
      if (method !== 'GET' && method !== 'PUT' && method !== 'DELETE')
        return fail(
          new Reject('method_not_allowed', 'use GET, PUT or DELETE /run-state', undefined, {
            allow: 'GET, PUT, DELETE',
          }),
        );
      return runState(request, url, method);
    }
    if (path.startsWith('/needs-approval/')) {
      let name: string;
      try {
        name = decodeURIComponent(path.slice('/needs-approval/'.length));
      } catch {
        return fail(new Reject('not_found', 'no such tool'));
      }
      if (name === '' || name.includes('/')) return fail(new Reject('not_found', 'no such tool'));
      if (method !== 'POST')
        return fail(new Reject('method_not_allowed', 'use POST', undefined, { allow: 'POST' }));
      return checkApproval(request, name);
    }
    if (path.startsWith('/tools/')) {
      const raw = path.slice('/tools/'.length);
      let name: string;
      try {
        name = decodeURIComponent(raw);
      } catch {
        return fail(new Reject('not_found', 'no such tool'));
      }
      if (name === '' || name.includes('/')) return fail(new Reject('not_found', 'no such tool'));
      if (method !== 'POST')
        return fail(new Reject('method_not_allowed', 'call a tool with POST', undefined, { allow: 'POST' }));
      return callTool(request, name);
    }
    return fail(new Reject('not_found', 'no such route'));
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

function validateInput(tool: ToolDefinition, input: unknown): { value: unknown } | Reject {
  let result: ReturnType<z.ZodType['safeParse']>;
  try {
    result = tool.input.safeParse(input);
  } catch {
    return new Reject('invalid_input', `invalid input for ${tool.name}`, [
      { path: '', message: 'unreadable value' },
    ]);
  }
  if (result.success) return { value: result.data };
  const issues = toContractIssues(result.error);
  const first = issues[0];
  const where = first && first.path !== '' ? ` at ${first.path}` : '';
  return new Reject(
    'invalid_input',
    `invalid input for ${tool.name}${first ? `: ${first.message}${where}` : ''}`,
    issues,
  );
}

function fromStored(stored: JsonValue, fingerprint: string): ToolResult | Reject {
  const record = stored as { fingerprint?: unknown; data?: JsonValue };
  if (typeof record !== 'object' || record === null || record.fingerprint !== fingerprint) {
    return new Reject('conflict', 'this idempotency key was used with a different input');
  }
  return { ok: true, data: record.data ?? null };
}

function replayed(result: ToolResult): Response {
  return json(200, result, { 'idempotent-replayed': 'true' });
}

function respond(result: ToolResult | Reject): Response {
  if (result instanceof Reject) return fail(result);
  return json(200, result);
}

function isJsonMediaType(value: string): boolean {
  const type = value.split(';')[0]?.trim().toLowerCase() ?? '';
  // text/plain is what fetch labels a string body with by default; the body must still parse as JSON.
  return (
    type === 'application/json' || type === 'text/plain' || /^application\/[a-z0-9.+-]*\+json$/.test(type)
  );
}

async function readJsonBody(request: Request, limit: number, timeoutMs: number): Promise<unknown> {
  const declared = request.headers.get('content-length');
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > limit) {
    return new Reject('payload_too_large', `the body may be at most ${limit} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // A client that trickles its body (or stops sending) must not hold the handler open indefinitely.
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      for (;;) {
        const next = await Promise.race([reader.read(), deadline]);
        if (next === 'timeout') {
          await reader.cancel().catch(() => {});
          return new Reject('request_timeout', `the body did not arrive within ${timeoutMs} ms`);
        }
        if (next.done) break;
        size += next.value.byteLength;
        if (size > limit) {
          await reader.cancel().catch(() => {});
          return new Reject('payload_too_large', `the body may be at most ${limit} bytes`);
        }
        chunks.push(next.value);
      }
    } catch {
      // The client went away mid-body: its fault, not ours, so no internal error and no error log.
      return new Reject('aborted', 'the request body could not be read to the end');
    } finally {
      clearTimeout(timer);
    }
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    return new Reject('invalid_json', 'the body is not valid UTF-8');
  }
  if (text.trim() === '') return new Reject('invalid_json', 'the body must be a JSON object');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return new Reject('invalid_json', 'the body is not valid JSON');
  }
  return checkBody(value, MAX_BODY_DEPTH) ?? value;
}

/**
 * Refuses what JSON.parse lets through but no schema should see: nesting past `max`, and numbers too large
 * for a double (`1e400` parses to Infinity, which would reach handlers that accept any JSON and later be
 * written back as `null`). Iterative on purpose: a recursive walk is what a deeply nested body would overflow.
 */
function checkBody(value: unknown, max: number): Reject | null {
  const stack: [unknown, number, (string | number)[]][] = [[value, 0, []]];
  while (stack.length > 0) {
    const [current, depth, path] = stack.pop() as [unknown, number, (string | number)[]];
    if (typeof current === 'number' && !Number.isFinite(current)) {
      const where = formatPath(path);
      return new Reject(
        'invalid_input',
        `a number in the body is out of range${where ? ` at ${where}` : ''}`,
        [{ path: where, message: 'number out of range' }],
      );
    }
    if (typeof current !== 'object' || current === null) continue;
    if (depth >= max) return new Reject('invalid_input', `the body is nested deeper than ${max} levels`);
    if (Array.isArray(current)) current.forEach((child, i) => stack.push([child, depth + 1, [...path, i]]));
    else for (const [key, child] of Object.entries(current)) stack.push([child, depth + 1, [...path, key]]);
  }
  return null;
}

function fingerprintOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function toManifestEntry(tool: ToolDefinition): ToolManifestEntry {
  const entry: ToolManifestEntry = {
    name: tool.name,
    description: tool.description,
    inputSchema: toJsonSchema(tool.input, 'input'),
    outputSchema: toJsonSchema(tool.output, 'output'),
  };
  if (tool.internal) entry.internal = true;
  if (tool.needsApproval === true) entry.needsApproval = 'always';
  else if (typeof tool.needsApproval === 'function') entry.needsApproval = 'check';
  return entry;
}

function toJsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  delete out.$schema;
  return out;
}

function normaliseBasePath(value: string | undefined): string {
  if (value === undefined || value === '' || value === '/') return '';
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(value))
    throw new ToolsKitError('invalid_options', 'basePath must start with "/" and be a plain path');
  return value.replace(/\/+$/, '');
}

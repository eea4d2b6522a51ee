import { IdSchema, safeParse } from '@threadline/contracts';
import { RunStateBodySchema, isJsonMediaType, readJsonBody } from './body.js';
import { BUILTIN_TOOLS } from './builtins.js';
import type { RouterContext } from './context.js';
import { ifNoneMatchHits } from './manifest-etag.js';
import { MANIFEST_HEADERS, Reject, fail, json, respond } from './responses.js';
import type { ToolDefinition } from './tool.js';

// The endpoints that name no tool: the manifest, the state read and a paused run's saved state.

/** `GET /tools?threadId=`: the manifest of the tools this token may call, with an ETag to revalidate it. */
export async function listTools(ctx: RouterContext, request: Request, url: URL): Promise<Response> {
  const auth = await ctx.authenticate(request);
  if (auth instanceof Reject) return fail(auth);
  const threadIds = url.searchParams.getAll('threadId');
  if (threadIds.length > 1)
    return fail(
      new Reject('invalid_input', 'pass at most one threadId', [{ path: 'threadId', message: 'repeated' }]),
    );
  if (threadIds.length === 1 && threadIds[0] !== auth.thread)
    return fail(new Reject('thread_mismatch', 'this token is for another thread'));
  // An ETag lets an agent keep the manifest between runs and revalidate it without the body.
  const variant = ctx.manifestVariants.for(auth.tools);
  const headers = { ...MANIFEST_HEADERS, etag: variant.etag };
  if (ifNoneMatchHits(request.headers.get('if-none-match'), variant.etag))
    return new Response(null, { status: 304, headers });
  return new Response(variant.body, { status: 200, headers });
}

/** `GET /state?threadId=`: the built-in state tool, for a token that may call it. */
export async function readState(ctx: RouterContext, request: Request, url: URL): Promise<Response> {
  const auth = await ctx.authenticate(request);
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
  const tool = ctx.registry.get(BUILTIN_TOOLS.stateGet) as ToolDefinition;
  return respond(await ctx.execute(tool, {}, auth, request.signal));
}

/**
 * `GET|PUT|DELETE /run-state?threadId=`: the saved state of the token's run, paused for a tool approval
 * (the agent service keeps nothing itself). Scoped to the act-as token's thread and run.
 */
export async function runState(
  ctx: RouterContext,
  request: Request,
  url: URL,
  method: 'GET' | 'PUT' | 'DELETE',
): Promise<Response> {
  const auth = await ctx.authenticate(request);
  if (auth instanceof Reject) return fail(auth);
  const { store } = ctx;
  if (method === 'PUT') {
    const contentType = request.headers.get('content-type');
    if (contentType !== null && !isJsonMediaType(contentType))
      return fail(new Reject('unsupported_media_type', 'send the body as application/json'));
    const body = await readJsonBody(request, ctx.maxRunStateBytes, ctx.bodyTimeoutMs);
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

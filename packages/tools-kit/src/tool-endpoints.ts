import { IdSchema, LIMITS, safeParse } from '@threadline/contracts';
import { ToolCallBodySchema, isJsonMediaType, readJsonBody, validateInput } from './body.js';
import type { RouterContext } from './context.js';
import { Reject, fail, json, respond } from './responses.js';

// The endpoints that name a tool: `POST /tools/:name` (call it) and `POST /needs-approval/:name`.

/** `POST /tools/:name` with `{ threadId, input, idempotencyKey? }`: runs the tool for the act-as token. */
export async function callTool(ctx: RouterContext, request: Request, name: string): Promise<Response> {
  const auth = await ctx.authenticate(request);
  if (auth instanceof Reject) return fail(auth);
  const tool = ctx.registry.get(name);
  if (!tool)
    return fail(
      new Reject('not_found', `no tool named ${JSON.stringify(name.slice(0, LIMITS.maxToolNameLength))}`),
    );
  if (!auth.tools.includes(name))
    return fail(new Reject('tool_not_allowed', `this token does not allow ${name}`));
  const envelope = await readCallBody(ctx, request);
  if (envelope instanceof Reject) return fail(envelope);
  const headerKey = request.headers.get('idempotency-key');
  let idempotencyKey = envelope.idempotencyKey;
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
  if (envelope.threadId !== auth.thread)
    return fail(new Reject('thread_mismatch', 'this token is for another thread'));

  const args = envelope.input === undefined ? {} : envelope.input;
  const input = validateInput(tool, args);
  if (input instanceof Reject) return fail(input);
  if (tool.needsApproval !== undefined && tool.needsApproval !== false) {
    const refusal = await ctx.approvals.checkApproved(
      tool,
      { input: input.value, args },
      auth,
      idempotencyKey,
    );
    if (refusal) return fail(refusal);
  }
  const execute = () => ctx.execute(tool, input.value, auth, request.signal);
  if (idempotencyKey === undefined) return respond(await execute());
  return ctx.idempotent.run(auth, name, idempotencyKey, input.value, execute);
}

/**
 * `POST /needs-approval/:name` with `{ threadId, input }`: whether this call of a tool with a
 * `needsApproval` check must wait for a person. Same checks as a call (token, scope, thread, input); the tool
 * does not run. A check that throws answers `true`.
 */
export async function checkApproval(ctx: RouterContext, request: Request, name: string): Promise<Response> {
  const auth = await ctx.authenticate(request);
  if (auth instanceof Reject) return fail(auth);
  const tool = ctx.registry.get(name);
  if (!tool) return fail(new Reject('not_found', 'no such tool'));
  if (!auth.tools.includes(name))
    return fail(new Reject('tool_not_allowed', `this token does not allow ${name}`));
  const envelope = await readCallBody(ctx, request);
  if (envelope instanceof Reject) return fail(envelope);
  if (envelope.threadId !== auth.thread)
    return fail(new Reject('thread_mismatch', 'this token is for another thread'));
  const input = validateInput(tool, envelope.input === undefined ? {} : envelope.input);
  if (input instanceof Reject) return fail(input);
  const needsApproval = await ctx.approvals.needsApprovalFor(tool, input.value, auth);
  return json(200, { ok: true, data: { needsApproval } });
}

/** The call envelope of a tool route's body: a JSON media type, within the body bounds, of the right shape. */
async function readCallBody(ctx: RouterContext, request: Request) {
  const contentType = request.headers.get('content-type');
  if (contentType !== null && !isJsonMediaType(contentType))
    return new Reject('unsupported_media_type', 'send the body as application/json');
  const body = await readJsonBody(request, ctx.maxBodyBytes, ctx.bodyTimeoutMs);
  if (body instanceof Reject) return body;
  const envelope = safeParse(ToolCallBodySchema, body, 'request body');
  if (!envelope.ok) return new Reject('invalid_input', envelope.error.message, envelope.error.issues);
  return envelope.value;
}

import { RunContext } from '@openai/agents';
import type { FunctionTool } from '@openai/agents';
import { ToolManifestSchema } from '@threadline/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createToolClient, defineTool } from '../src/index.js';
import { toAgentTools } from '../src/agents.js';
import { makeSetup, serveExpress } from './helpers.js';

let transfers = 0;
const clear = defineTool({
  name: 'profile.wipe',
  description: 'Wipe the profile.',
  input: z.strictObject({}),
  output: z.strictObject({ wiped: z.boolean() }),
  needsApproval: true,
  handler: () => ({ wiped: true }),
});
const seen: unknown[] = [];
const transfer = defineTool({
  name: 'bank.transfer',
  description: 'Move money.',
  input: z.strictObject({ amount: z.number().int().min(0) }),
  output: z.strictObject({ ok: z.boolean() }),
  needsApproval: ({ amount }, ctx) => {
    seen.push(ctx);
    if (amount === 13) throw new Error('unlucky');
    return amount > 100;
  },
  handler: () => {
    transfers++;
    return { ok: true };
  },
});
const plain = defineTool({
  name: 'notes.add',
  description: 'Add a note.',
  input: z.strictObject({ text: z.string() }),
  output: z.strictObject({}),
  handler: () => ({}),
});

const setup = makeSetup({ tools: [clear, transfer, plain], maxRunStateBytes: 300_000 });
let server: { url: string; close(): Promise<void> };
beforeAll(async () => {
  server = await serveExpress(setup.router);
});
afterAll(async () => {
  await server.close();
});

async function client(over: { threadId?: string; runId?: string; userId?: string } = {}) {
  const token = await setup.mint(over);
  return createToolClient({ baseUrl: server.url, token, threadId: over.threadId ?? 't1' });
}

describe('needsApproval', () => {
  it('is carried into the manifest as always / check, and absent for ordinary tools', async () => {
    const manifest = ToolManifestSchema.parse(setup.router.manifest);
    const byName = new Map(manifest.tools.map((t) => [t.name, t]));
    expect(byName.get('profile.wipe')?.needsApproval).toBe('always');
    expect(byName.get('bank.transfer')?.needsApproval).toBe('check');
    expect(byName.get('notes.add')?.needsApproval).toBeUndefined();
    expect(byName.get('session.get')?.needsApproval).toBeUndefined();
  });

  it('refuses a bad needsApproval and an internal tool that needs approval', () => {
    const base = {
      name: 'x.y',
      description: 'd',
      input: z.strictObject({}),
      output: z.strictObject({}),
      handler: () => ({}),
    };
    expect(() => defineTool({ ...base, needsApproval: 'yes' as unknown as boolean })).toThrow(
      /needsApproval/,
    );
    expect(() => defineTool({ ...base, internal: true, needsApproval: true })).toThrow(/internal/);
  });

  it('POST /needs-approval/:name runs the check with the token’s user, thread and run, never the tool', async () => {
    const c = await client({ userId: 'u7', runId: 'r7' });
    expect(await c.needsApproval('bank.transfer', { amount: 500 })).toEqual({
      ok: true,
      data: { needsApproval: true },
    });
    expect(await c.needsApproval('bank.transfer', { amount: 5 })).toEqual({
      ok: true,
      data: { needsApproval: false },
    });
    // A check that throws asks for approval.
    expect(await c.needsApproval('bank.transfer', { amount: 13 })).toEqual({
      ok: true,
      data: { needsApproval: true },
    });
    expect(await c.needsApproval('profile.wipe', {})).toMatchObject({ data: { needsApproval: true } });
    expect(await c.needsApproval('notes.add', { text: 'a' })).toMatchObject({
      data: { needsApproval: false },
    });
    expect(seen.at(-1)).toEqual({ userId: 'u7', threadId: 't1', runId: 'r7' });
    expect(transfers).toBe(0);
    const bad = await c.needsApproval('bank.transfer', { amount: -1 });
    expect(bad).toMatchObject({ ok: false, error: { code: 'invalid_input' } });
    expect(await c.needsApproval('nope', {})).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const narrow = createToolClient({
      baseUrl: server.url,
      token: await setup.mint({ tools: ['notes.add'] }),
      threadId: 't1',
    });
    expect(await narrow.needsApproval('bank.transfer', { amount: 1 })).toMatchObject({
      ok: false,
      error: { code: 'tool_not_allowed' },
    });
  });

  it('becomes the SDK tool’s needsApproval: true for always, the host’s answer for check', async () => {
    const c = await client();
    const manifest = ToolManifestSchema.parse(setup.router.manifest);
    const tools = toAgentTools(c, manifest) as FunctionTool[];
    const byName = new Map(tools.map((t) => [t.name, t]));
    const ctx = new RunContext({});
    expect(await byName.get('profile_wipe')!.needsApproval(ctx, {} as never, 'c1')).toBe(true);
    expect(await byName.get('bank_transfer')!.needsApproval(ctx, { amount: 500 } as never, 'c2')).toBe(true);
    expect(await byName.get('bank_transfer')!.needsApproval(ctx, { amount: 1 } as never, 'c3')).toBe(false);
    expect(await byName.get('notes_add')!.needsApproval(ctx, { text: 'x' } as never, 'c4')).toBe(false);
    // The check endpoint unreachable: ask (fail closed).
    const dead = createToolClient({ baseUrl: 'http://127.0.0.1:9', token: 'x', threadId: 't1' });
    const deadTools = toAgentTools(dead, manifest) as FunctionTool[];
    const deadTransfer = deadTools.find((t) => t.name === 'bank_transfer')!;
    expect(await deadTransfer.needsApproval(ctx, { amount: 1 } as never, 'c5')).toBe(true);
  });
});

describe('/run-state', () => {
  it('saves, reads back and deletes the token’s run state; other runs and threads see nothing', async () => {
    const c = await client({ runId: 'rs1' });
    expect(await c.getRunState()).toEqual({ ok: true, data: { state: null } });
    const state = JSON.stringify({ big: 'x'.repeat(100_000) }); // larger than a tool call's 64 KiB body
    expect((await c.putRunState(state)).ok).toBe(true);
    expect(await c.getRunState()).toEqual({ ok: true, data: { state } });
    expect(await setup.store.getRunState('t1', 'rs1')).toBe(state);
    const other = await client({ runId: 'rs2' });
    expect(await other.getRunState()).toEqual({ ok: true, data: { state: null } });
    const otherThread = await client({ threadId: 't2', runId: 'rs1' });
    expect(await otherThread.getRunState()).toEqual({ ok: true, data: { state: null } });
    expect((await c.deleteRunState()).ok).toBe(true);
    expect(await c.getRunState()).toEqual({ ok: true, data: { state: null } });
  });

  it('refuses a body over maxRunStateBytes, another thread, a bad body, no token and other methods', async () => {
    const c = await client({ runId: 'rs3' });
    expect(await c.putRunState('x'.repeat(300_001))).toMatchObject({
      ok: false,
      error: { code: 'payload_too_large' },
    });
    const token = await setup.mint({ runId: 'rs3' });
    const put = (body: unknown) =>
      fetch(`${server.url}/run-state`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect((await put({ threadId: 't2', state: 's' })).status).toBe(403);
    expect((await put({ threadId: 't1', state: '' })).status).toBe(400);
    expect((await put({ threadId: 't1', state: 's', extra: 1 })).status).toBe(400);
    expect((await fetch(`${server.url}/run-state?threadId=t1`)).status).toBe(401);
    const post = await fetch(`${server.url}/run-state?threadId=t1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(post.status).toBe(405);
    expect(await setup.store.getRunState('t1', 'rs3')).toBeNull();
  });

  it('is refused with run_not_active once the run has ended (isRunActive)', async () => {
    const ended = makeSetup({ isRunActive: () => false });
    const res = await ended.router(
      new Request('http://api.test/run-state?threadId=t1', {
        headers: { authorization: `Bearer ${await ended.mint()}` },
      }),
    );
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('run_not_active');
  });
});

describe('the router enforces approvals (a direct call with a valid act-as token)', () => {
  let wipes = 0;
  let bigTransfers = 0;
  const wipe = defineTool({
    name: 'profile.wipe',
    description: 'Wipe the profile.',
    input: z.strictObject({}),
    output: z.strictObject({ wiped: z.number() }),
    needsApproval: true,
    handler: () => ({ wiped: ++wipes }),
  });
  const note = defineTool({
    name: 'note.send',
    description: 'Send a note.',
    input: z.strictObject({ text: z.string(), urgent: z.boolean().default(false) }),
    output: z.strictObject({ sent: z.boolean() }),
    needsApproval: true,
    handler: () => ({ sent: true }),
  });
  const pay = defineTool({
    name: 'bank.transfer',
    description: 'Move money.',
    input: z.strictObject({ amount: z.number().int().min(0) }),
    output: z.strictObject({ n: z.number() }),
    needsApproval: ({ amount }) => amount > 100,
    handler: () => ({ n: ++bigTransfers }),
  });
  /** Decisions as the host's log holds them (TOOL_APPROVAL_RESOLVED). */
  const decisions: { threadId: string; runId: string; toolCallId: string; approved: boolean }[] = [];
  const asked: unknown[] = [];
  const guarded = makeSetup({
    tools: [wipe, pay, note],
    approvals: {
      isApproved: (call) => {
        asked.push(call);
        return decisions.some(
          (d) =>
            d.approved &&
            d.threadId === call.threadId &&
            d.runId === call.runId &&
            d.toolCallId === call.toolCallId,
        );
      },
    },
  });
  async function post(name: string, input: unknown, key?: string, runId = 'r1') {
    const res = await guarded.router(
      new Request(`http://api.test/tools/${name}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await guarded.mint({ runId })}`,
          'content-type': 'application/json',
          ...(key ? { 'idempotency-key': key } : {}),
        },
        body: JSON.stringify({ threadId: 't1', input }),
      }),
    );
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }
  const refused = { status: 403, body: { ok: false, error: { code: 'approval_required' } } };

  it('refuses without a decision, after a rejection, with another call’s or another run’s approval', async () => {
    // No idempotency key: no call id, so nothing can name an approval.
    expect(await post('profile.wipe', {})).toMatchObject(refused);
    // No decision for this call.
    expect(await post('profile.wipe', {}, 'call_a')).toMatchObject(refused);
    // Rejected.
    decisions.push({ threadId: 't1', runId: 'r1', toolCallId: 'call_a', approved: false });
    expect(await post('profile.wipe', {}, 'call_a')).toMatchObject(refused);
    // Approved, but another call of the same run.
    decisions.push({ threadId: 't1', runId: 'r1', toolCallId: 'call_b', approved: true });
    expect(await post('profile.wipe', {}, 'call_a')).toMatchObject(refused);
    // Approved, same call id, but in another run of the thread.
    decisions.push({ threadId: 't1', runId: 'r0', toolCallId: 'call_c', approved: true });
    expect(await post('profile.wipe', {}, 'call_c')).toMatchObject(refused);
    // A `check` tool whose check says yes needs it too; one whose check says no does not ask.
    expect(await post('bank.transfer', { amount: 500 }, 'call_d')).toMatchObject(refused);
    expect(wipes).toBe(0);
    expect(bigTransfers).toBe(0);
    expect(await post('bank.transfer', { amount: 5 }, 'call_e')).toMatchObject({ status: 200 });
    expect(bigTransfers).toBe(1);
    expect(asked).toContainEqual({
      userId: 'u1',
      threadId: 't1',
      runId: 'r1',
      toolCallId: 'call_c',
      toolName: 'profile.wipe',
      input: {},
      args: {},
    });
  });

  it('asks about the arguments as sent (before schema defaults) next to the validated input', async () => {
    expect(await post('note.send', { text: 'hi' }, 'call_n')).toMatchObject(refused);
    expect(asked).toContainEqual(
      expect.objectContaining({
        toolCallId: 'call_n',
        input: { text: 'hi', urgent: false },
        args: { text: 'hi' },
      }),
    );
  });

  it('runs an approved call once; a retry with the same call id replays its result', async () => {
    decisions.push({ threadId: 't1', runId: 'r1', toolCallId: 'call_ok', approved: true });
    const first = await post('profile.wipe', {}, 'call_ok');
    expect(first).toEqual({ status: 200, body: { ok: true, data: { wiped: 1 } } });
    expect(await post('profile.wipe', {}, 'call_ok')).toEqual(first);
    expect(wipes).toBe(1);
  });

  it('refuses every call of such a tool when the host gave no approvals check, and says so at start', async () => {
    expect(() => makeSetup({ tools: [wipe], approvals: {} as never })).toThrow(/isApproved/);
    const bare = makeSetup({ tools: [wipe] });
    expect(bare.log.warns.flat().join(' ')).toMatch(/approvals/);
    const res = await bare.router(
      new Request('http://api.test/tools/profile.wipe', {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await bare.mint()}`,
          'idempotency-key': 'call_x',
        },
        body: JSON.stringify({ threadId: 't1', input: {} }),
      }),
    );
    expect(res.status).toBe(403);
    expect(wipes).toBe(1);
  });

  it('answers 503 unavailable when the check throws, and the tool does not run', async () => {
    const broken = makeSetup({
      tools: [wipe],
      approvals: {
        isApproved: () => {
          throw new Error('db down');
        },
      },
    });
    const res = await broken.router(
      new Request('http://api.test/tools/profile.wipe', {
        method: 'POST',
        headers: { authorization: `Bearer ${await broken.mint()}`, 'idempotency-key': 'call_y' },
        body: JSON.stringify({ threadId: 't1', input: {} }),
      }),
    );
    expect(res.status).toBe(503);
    expect(wipes).toBe(1);
  });
});

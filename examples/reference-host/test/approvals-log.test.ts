// The host's approvals check for the tool router, read from a real SQLite log: only an approved
// TOOL_APPROVAL_RESOLVED of the same run and tool call id, for a call requested for the same tool, counts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentEvent } from '@threadline/contracts';
import { openSqliteStore, type SqliteStore } from '@threadline/relay/sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { approvalsFromLog } from '../src/approvals.js';

let dir: string;
let store: SqliteStore;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-approvals-'));
  store = openSqliteStore({ path: join(dir, 'threadline.db') });
  await store.createThread({ threadId: 't1', ownerId: 'u1' });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const ts = Date.now();
const requested = (runId: string, toolCallId: string, toolName = 'profile.clear', args = '{}') =>
  ({
    type: 'TOOL_APPROVAL_REQUESTED',
    threadId: 't1',
    runId,
    ts,
    toolCallId,
    toolName,
    args,
    expiresAt: new Date(ts + 60_000).toISOString(),
  }) as AgentEvent;
const resolved = (runId: string, toolCallId: string, approved: boolean) =>
  ({
    type: 'TOOL_APPROVAL_RESOLVED',
    threadId: 't1',
    runId,
    ts,
    toolCallId,
    approved,
    decidedBy: 'u1',
  }) as AgentEvent;
const call = (runId: string, toolCallId: string, toolName = 'profile.clear', args: unknown = {}) => ({
  userId: 'u1',
  threadId: 't1',
  runId,
  toolCallId,
  toolName,
  input: args,
  args,
});

describe('approvalsFromLog', () => {
  it('answers true only for an approved decision of the same run, call id and tool', async () => {
    const approvals = approvalsFromLog(store);
    await store.append('t1', [requested('r1', 'call_1')]);
    expect(await approvals.isApproved(call('r1', 'call_1'))).toBe(false); // pending
    await store.append('t1', [resolved('r1', 'call_1', false)]);
    expect(await approvals.isApproved(call('r1', 'call_1'))).toBe(false); // rejected
    await store.append('t1', [requested('r2', 'call_2'), resolved('r2', 'call_2', true)]);
    expect(await approvals.isApproved(call('r2', 'call_2'))).toBe(true);
    expect(await approvals.isApproved(call('r3', 'call_2'))).toBe(false); // another run's decision
    expect(await approvals.isApproved(call('r2', 'call_1'))).toBe(false); // another call of the run
    expect(await approvals.isApproved(call('r2', 'call_2', 'bank.transfer'))).toBe(false); // another tool
    expect(await approvals.isApproved({ ...call('r2', 'call_2'), threadId: 't2' })).toBe(false);
    // A decision without its request (not something the relay writes) does not count either.
    await store.append('t1', [resolved('r4', 'call_4', true)]);
    expect(await approvals.isApproved(call('r4', 'call_4'))).toBe(false);
  });

  it('approves only the arguments the person was shown: the same call id with other arguments is refused', async () => {
    // What an attacker holding the run's act-as token would try between the decision and the agent's call.
    const approvals = approvalsFromLog(store);
    await store.append('t1', [
      requested('r1', 'call_1', 'bank.transfer', '{ "amount": 50, "to": { "iban": "DE02", "name": "Ada" } }'),
      resolved('r1', 'call_1', true),
    ]);
    const shown = { to: { name: 'Ada', iban: 'DE02' }, amount: 50 }; // same JSON, keys in another order
    expect(await approvals.isApproved(call('r1', 'call_1', 'bank.transfer', shown))).toBe(true);
    for (const other of [
      { ...shown, amount: 50_000 },
      { ...shown, to: { iban: 'GB33', name: 'Ada' } },
      { ...shown, memo: 'extra' },
      { amount: 50 },
      [shown],
      '{"amount":50}',
      null,
    ])
      expect(await approvals.isApproved(call('r1', 'call_1', 'bank.transfer', other))).toBe(false);
    // A request whose arguments are not JSON (the runner never writes that) approves nothing.
    await store.append('t1', [
      requested('r2', 'call_2', 'bank.transfer', '{not json'),
      resolved('r2', 'call_2', true),
    ]);
    expect(await approvals.isApproved(call('r2', 'call_2', 'bank.transfer', {}))).toBe(false);
  });

  it('reads a bounded tail of the log: a decision older than the scan does not count', async () => {
    await store.append('t1', [requested('r1', 'call_1'), resolved('r1', 'call_1', true)]);
    const chunks = Array.from(
      { length: 10 },
      (_, i) =>
        ({
          type: 'TEXT_MESSAGE_CHUNK',
          threadId: 't1',
          runId: 'r1',
          ts,
          messageId: 'm1',
          delta: `${i}`,
        }) as AgentEvent,
    );
    await store.append('t1', chunks);
    expect(await approvalsFromLog(store, 12).isApproved(call('r1', 'call_1'))).toBe(true);
    expect(await approvalsFromLog(store, 11).isApproved(call('r1', 'call_1'))).toBe(false);
  });
});

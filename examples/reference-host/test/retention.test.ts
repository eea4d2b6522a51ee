// RETENTION_DAYS: the host's sweeper over a real SQLite file removes threads idle for longer than the bound,
// never one with a run in progress, and at most its bound of store calls per sweep.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentEvent } from '@threadline/contracts';
import { openSqliteStore, type SqliteStore } from '@threadline/relay/sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readConfig } from '../src/config.js';
import { startRetention, type Retention } from '../src/retention.js';

const DAY = 86_400_000;
let dir: string;
let store: SqliteStore;
let retention: Retention | undefined;
const logs: string[] = [];
const logger = { info: (m: string) => void logs.push(m), warn: (m: string) => void logs.push(`warn ${m}`) };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tl-retention-'));
  store = openSqliteStore({ path: join(dir, 'threadline.db') });
  logs.length = 0;
});
afterEach(async () => {
  retention?.stop();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
async function thread(running = false): Promise<string> {
  const threadId = `t-${++n}`;
  const runId = `r-${n}`;
  await store.createThread({ threadId, ownerId: 'u1' });
  const ids = { threadId, runId, ts: Date.now() };
  await store.startRun({
    threadId,
    runId,
    userId: 'u1',
    clientMessageId: `c-${n}`,
    userMessage: {
      type: 'USER_MESSAGE',
      ...ids,
      messageId: `m-${n}`,
      clientMessageId: `c-${n}`,
      userId: 'u1',
      text: 'hi',
    },
  });
  await store.addSessionItems(threadId, [{ role: 'user', content: 'hi' }]);
  if (!running) await store.append(threadId, [{ type: 'RUN_FINISHED', ...ids } as AgentEvent]);
  return threadId;
}

describe('host retention (RETENTION_DAYS)', () => {
  it('removes threads idle for more than the bound and keeps the one with a run in progress', async () => {
    const idle = [await thread(), await thread()];
    const busy = await thread(true);
    // Today nothing is older than 30 days.
    retention = startRetention({ store, days: 30, logger });
    expect(await retention.sweep()).toMatchObject({ threads: 0 });
    retention.stop();
    // 31 days on, both idle threads are old; the busy one is too, but its run is still going.
    retention = startRetention({ store, days: 30, logger, now: () => Date.now() + 31 * DAY });
    expect(await retention.sweep()).toEqual({ threads: 2, events: 4, runs: 2, sessionItems: 2, more: false });
    for (const t of idle) expect(await store.getThread(t)).toBeNull();
    expect(await store.getThread(busy)).not.toBeNull();
    expect(await store.getSessionItems(busy)).toHaveLength(1);
    expect((await store.activeRun(busy))?.status).toBe('running');
    expect(logs.some((l) => l.startsWith('retention: removed 2 thread(s)'))).toBe(true);
  });

  it('one sweep makes at most maxCalls store calls; the rest waits for the next sweep', async () => {
    for (let i = 0; i < 5; i++) await thread();
    retention = startRetention({
      store,
      days: 1,
      logger,
      batch: 2,
      maxCalls: 2,
      now: () => Date.now() + 2 * DAY,
    });
    // The sweep at start and this one share one run.
    expect(await retention.sweep()).toMatchObject({ threads: 4, more: true });
    expect(await retention.sweep()).toMatchObject({ threads: 1, more: false });
  });

  it('RETENTION_DAYS is off when unset and checked when set', () => {
    expect(readConfig({}).retentionDays).toBeUndefined();
    expect(readConfig({ RETENTION_DAYS: '90' }).retentionDays).toBe(90);
    expect(() => readConfig({ RETENTION_DAYS: '0' })).toThrow(/RETENTION_DAYS must be between 1 and 36500/);
    expect(() => readConfig({ RETENTION_DAYS: 'soon' })).toThrow(/RETENTION_DAYS/);
  });
});

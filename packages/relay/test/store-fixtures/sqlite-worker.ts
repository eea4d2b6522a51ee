// A second relay process in miniature: opens the real SqliteStore on a shared file and, on "go" from the
// parent, races the other worker. Prints one JSON line with what the store returned to it.
import { createInterface } from 'node:readline';
import { openSqliteStore } from '../../src/stores/sqlite.js';

const [mode, path, threadId, name, countText] = process.argv.slice(2);
if (!mode || !path || !threadId || !name || !countText)
  throw new Error('usage: <append|start|flood> <path> <threadId> <name> <count>');
const count = Number(countText);
const store = openSqliteStore({ path, busyTimeoutMs: 20_000 });
const lines = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
for await (const line of lines) if (line === 'go') break;
lines.close();

// Leave the write lock free for a moment after each commit: SQLite's busy handler polls with sleeps, so a
// writer that re-locks at once could keep the other one waiting through all of its appends (no real race).
const yieldToOthers = () => new Promise<void>((resolve) => setTimeout(resolve, 1));
const result: { batches: number[][]; started: string[]; refused: string[]; sawOther?: boolean } = {
  batches: [],
  started: [],
  refused: [],
};
const ts = Date.now();
if (mode === 'append') {
  // At least `count` appends, then on until this process has seen the other writer's events land between two
  // of its own (a gap in its seqs), so the race really happened; bounded so a lone worker still ends.
  let sawOther = false;
  let previous = 0;
  for (let i = 0; i < 3_000 && (i < count || !sawOther); i++) {
    const size = (i % 3) + 1;
    const events = Array.from({ length: size }, (_, j) => ({
      type: 'TEXT_MESSAGE_CHUNK' as const,
      threadId,
      runId: 'run-x',
      ts,
      messageId: `${name}-${i}`,
      delta: `${name}:${i}:${j}`,
    }));
    const stored = await store.append(threadId, events);
    const seqs = stored.map((e) => e.seq);
    if (previous !== 0 && seqs[0] !== previous + 1) sawOther = true;
    previous = seqs[seqs.length - 1]!;
    result.batches.push(seqs);
    await yieldToOthers();
  }
  result.sawOther = sawOther;
} else if (mode === 'flood') {
  // Appends batches of `count` until killed, reporting each commit; the parent SIGKILLs it mid-stream.
  for (let i = 0; ; i++) {
    const events = Array.from({ length: count }, (_, j) => ({
      type: 'TEXT_MESSAGE_CHUNK' as const,
      threadId,
      runId: 'run-x',
      ts,
      messageId: `${name}-${i}`,
      delta: `${i}:${j}`,
    }));
    const stored = await store.append(threadId, events);
    process.stdout.write(`${stored[stored.length - 1]!.seq}\n`);
  }
} else {
  for (let i = 0; i < count; i++) {
    const clientMessageId = `${name}-${i}`;
    const runId = `run-${name}-${i}`;
    const r = await store.startRun({
      threadId,
      runId,
      userId: 'u1',
      clientMessageId,
      userMessage: {
        type: 'USER_MESSAGE',
        threadId,
        runId,
        ts,
        messageId: `m-${clientMessageId}`,
        clientMessageId,
        userId: 'u1',
        text: 'hi',
      },
    });
    if (r.status === 'started') {
      result.started.push(runId);
      await store.append(threadId, [{ type: 'RUN_FINISHED', threadId, runId, ts }]);
    } else result.refused.push(r.status);
    await yieldToOthers();
  }
}
await store.close();
process.stdout.write(`${JSON.stringify(result)}\n`);

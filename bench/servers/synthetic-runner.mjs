// An agent runner that streams a synthetic answer as fast as it can: RUN_STARTED, N text chunks whose deltas
// carry their production time, RUN_FINISHED. The message text says how many chunks: "stream <N> [<eventsPerSecond>]".
import { stampedDelta } from '../lib.mjs';

export const syntheticRunner = {
  async *run(request, { signal } = {}) {
    // "distinct" gives every chunk its own messageId, so the relay cannot coalesce them (a log of N events).
    const [, nText, rateText, distinct] = request.message.split(' ');
    const n = Number(nText);
    const rate = Number(rateText ?? 0);
    const { threadId, runId } = request;
    yield { type: 'RUN_STARTED', threadId, runId, ts: Date.now() };
    const started = performance.now();
    for (let i = 0; i < n; i++) {
      if (signal?.aborted) return;
      if (rate > 0) {
        // Paced stream (concurrency test): wait until this chunk is due.
        const due = started + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      } else if (i % 1024 === 1023) {
        await new Promise((r) => setImmediate(r));
      }
      yield {
        type: 'TEXT_MESSAGE_CHUNK',
        threadId,
        runId,
        messageId: distinct ? `${runId}:m${i}` : `${runId}:m`,
        delta: stampedDelta(),
        ts: Date.now(),
      };
    }
    yield { type: 'RUN_FINISHED', threadId, runId, ts: Date.now() };
  },
};

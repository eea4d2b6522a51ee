import type { Socket } from 'node:net';
import { isTerminalEvent, type RunRequest } from '@threadline/contracts';
import type { Req, Res } from './http-io.js';
import { abortReason } from './run-errors.js';
import type { AgentRunner } from './runner-options.js';

// One run streamed as SSE: `data: <event JSON>` per event, `: ping` heartbeats while nothing else is written,
// events of one tick in one write, and backpressure that a client which stops reading cannot hold forever.

/** The bounds of a run stream (see AgentServerOptions). */
export interface SseStreamSettings {
  heartbeatMs: number;
  writeStallTimeoutMs: number;
  maxWriteBatchBytes: number;
}

/**
 * Streams `runner.run(request)` to `res` until its terminal event. A client that goes away (HTTP/1 disconnect,
 * HTTP/2 stream reset) or stops reading for `writeStallTimeoutMs` aborts `controller`; the runner is still read
 * to its terminal event so that it cleans up. Never throws: a failing stream is logged and the response ended.
 */
export async function streamRun(input: {
  runner: AgentRunner;
  request: RunRequest;
  req: Req;
  res: Res;
  controller: AbortController;
  settings: SseStreamSettings;
  logger: Pick<Console, 'error'>;
}): Promise<void> {
  const { runner, request, req, res, controller, settings } = input;
  const { heartbeatMs, writeStallTimeoutMs: stallMs, maxWriteBatchBytes: maxBatch } = settings;
  // `Http2ServerResponse` has no `destroyed`: a 'close' (client gone, HTTP/2 stream reset) marks the end too.
  let closed = false;
  const gone = () => closed || res.destroyed === true;
  // Removed before the response is ended, so a 'close' heard here is a client that went away: an HTTP/1
  // disconnect or an HTTP/2 RST_STREAM (after which Http2ServerResponse reports writableFinished, so only
  // writableEnded tells the cases apart).
  const onClose = () => {
    closed = true;
    if (!res.writableEnded) controller.abort(abortReason('aborted', 'The client disconnected.'));
  };
  res.on('close', onClose);
  // Backpressure from the return value of write(): `writableNeedDrain` is missing on some Node versions'
  // Http2ServerResponse. Set by a write that filled the buffer, cleared by its 'drain'.
  let needDrain = false;
  const onDrain = () => (needDrain = false);
  res.on('drain', onDrain);
  // HTTP/1 only: over HTTP/2 `req.socket` is a proxy of the session's socket (shared by every stream) and
  // the session already disables Nagle.
  if (req.httpVersionMajor === 1) (req.socket as Socket).setNoDelay(true);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders?.();
  let lastWrite = Date.now();
  const send = (text: string) => {
    if (!res.write(text)) needDrain = true;
    lastWrite = Date.now();
  };
  /** Waits for the response to drain; a reader that stalls past the bound loses its run. */
  const drained = () =>
    new Promise<void>((resolve) => {
      if (gone()) return resolve();
      const timer = setTimeout(() => {
        controller.abort(abortReason('aborted', 'The client stopped reading.'));
        finish();
        closed = true;
        res.destroy();
      }, stallMs);
      const finish = () => {
        clearTimeout(timer);
        res.off('drain', finish);
        res.off('close', finish);
        resolve();
      };
      res.on('drain', finish);
      res.on('close', finish);
    });
  const heartbeat = setInterval(
    () => {
      if (Date.now() - lastWrite >= heartbeatMs && !res.writableEnded && !gone()) send(': ping\n\n');
    },
    Math.max(10, Math.floor(heartbeatMs / 2)),
  );
  // Events are gathered into one string and written once per tick (or at the size bound): each write costs a
  // syscall, an HTTP chunk header and a nextTick callback. The flush runs as soon as the runner waits for
  // anything, so no event waits for a timer.
  let pending = '';
  let flushQueued = false;
  const flush = () => {
    flushQueued = false;
    if (pending === '') return;
    const text = pending;
    pending = '';
    if (gone() || res.writableEnded) return;
    send(text);
  };
  try {
    for await (const event of runner.run(request, { signal: controller.signal })) {
      if (gone()) continue; // keep draining so the runner reaches its terminal event and cleans up
      pending += `data: ${JSON.stringify(event)}\n\n`;
      if (isTerminalEvent(event)) break;
      if (pending.length >= maxBatch) flush();
      else if (!flushQueued) {
        flushQueued = true;
        process.nextTick(flush);
      }
      // A flush (here or in an earlier tick) filled the buffer: wait before asking for more events.
      if (needDrain) await drained();
    }
  } catch (error) {
    input.logger.error('[threadline-agent] run stream failed', error);
  } finally {
    clearInterval(heartbeat);
    res.off('close', onClose);
    res.off('drain', onDrain);
    if (!res.writableEnded) {
      if (!gone() && pending !== '') res.end(pending);
      else res.end();
    }
    pending = '';
  }
}

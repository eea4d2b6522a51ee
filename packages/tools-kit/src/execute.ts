import { randomUUID } from 'node:crypto';
import { AgentEventSchema, findNonJson, safeParse } from '@threadline/contracts';
import type { ActAsClaims, AgentEvent, ToolResult } from '@threadline/contracts';
import { ToolFailure, ToolsKitError } from './errors.js';
import { Reject } from './responses.js';
import type { EventSink } from './store.js';
import type { ToolContext, ToolDefinition } from './tool.js';

/** What running a handler needs (see `ToolRouterOptions`). */
export interface ExecutorOptions {
  handlerTimeoutMs: number;
  maxEventsPerCall: number;
  events: EventSink | undefined;
  logger: Pick<Console, 'error' | 'warn'>;
}

/** Runs one validated call of a tool for the token's claims; aborted when `signal` is. */
export type Execute = (
  tool: ToolDefinition,
  input: unknown,
  claims: ActAsClaims,
  signal: AbortSignal,
) => Promise<ToolResult | Reject>;

/**
 * Creates the step that runs a handler: with a deadline and the caller's abort, its output checked against the
 * tool's schema and for JSON, its emitted events checked and published only once it succeeded. A
 * {@link ToolFailure} becomes its code; anything else thrown is an internal error with a logged reference.
 */
export function createExecutor({
  handlerTimeoutMs,
  maxEventsPerCall,
  events,
  logger,
}: ExecutorOptions): Execute {
  let warnedNoSink = false;
  return async (tool, input, claims, outer) => {
    const controller = new AbortController();
    const queued: AgentEvent[] = [];
    const onOuterAbort = () => controller.abort(new ToolFailure('aborted', 'the caller went away'));
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
          throw new ToolFailure('thread_mismatch', 'a tool may emit events to its own thread only');
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
              new ToolFailure('timeout', `tool ${tool.name} did not finish within ${handlerTimeoutMs} ms`),
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
      if (error instanceof ToolFailure) return new Reject(error.errorCode, error.message, error.issues);
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
  };
}

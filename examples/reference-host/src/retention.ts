// RETENTION_DAYS: threads idle for longer are removed (event log, runs, the agent's memory), never one with a
// run in progress; the store decides that in one transaction per batch (EventStore.pruneOlderThan).
import type { EventStore, PruneResult } from '@threadline/relay';

/** How often the host looks for old threads. */
export const RETENTION_INTERVAL_MS = 3_600_000;
/** Threads one store call removes. */
export const RETENTION_BATCH = 500;
/** Store calls one sweep makes at most; what is left waits for the next sweep. */
export const RETENTION_MAX_CALLS = 20;

const DAY_MS = 86_400_000;

/** Options of {@link startRetention}. */
export interface RetentionOptions {
  store: Pick<EventStore, 'pruneOlderThan'>;
  /** Threads idle for more than this many days are removed. */
  days: number;
  logger: Pick<Console, 'info' | 'warn'>;
  intervalMs?: number;
  batch?: number;
  maxCalls?: number;
  /** The clock (tests). */
  now?: () => number;
}

/** A running retention sweeper. */
export interface Retention {
  /** One sweep now (at most `maxCalls` store calls); resolves with what it removed. A sweep already going is joined. */
  sweep(): Promise<Omit<PruneResult, 'more'> & { more: boolean }>;
  /** Stops the interval (a sweep going on finishes). */
  stop(): void;
}

/**
 * Sweeps once at start and then every `intervalMs` (unref'd: it never keeps the process alive), logging what it
 * removed. A failed sweep is logged and retried at the next interval.
 */
export function startRetention(options: RetentionOptions): Retention {
  const now = options.now ?? Date.now;
  const batch = options.batch ?? RETENTION_BATCH;
  const maxCalls = options.maxCalls ?? RETENTION_MAX_CALLS;
  let going: ReturnType<Retention['sweep']> | undefined;

  const sweepOnce = async () => {
    const cutoff = now() - options.days * DAY_MS;
    const total = { threads: 0, events: 0, runs: 0, sessionItems: 0, more: false };
    for (let call = 0; call < maxCalls; call++) {
      const r = await options.store.pruneOlderThan(cutoff, { limit: batch });
      total.threads += r.threads;
      total.events += r.events;
      total.runs += r.runs;
      total.sessionItems += r.sessionItems;
      total.more = r.more;
      if (!r.more) break;
    }
    if (total.threads > 0)
      options.logger.info(
        `retention: removed ${total.threads} thread(s) idle for over ${options.days} day(s) (${total.events} events, ${total.sessionItems} agent memory items)${total.more ? '; more next time' : ''}`,
      );
    return total;
  };
  const sweep = () =>
    (going ??= sweepOnce().finally(() => {
      going = undefined;
    }));
  const tick = () =>
    void sweep().catch((err: unknown) => options.logger.warn('retention sweep failed:', err));
  const timer = setInterval(tick, options.intervalMs ?? RETENTION_INTERVAL_MS);
  timer.unref();
  tick();
  return { sweep, stop: () => clearInterval(timer) };
}

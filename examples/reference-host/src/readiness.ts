import type pg from 'pg';

/** What the host knows about the agent service's health. */
export interface AgentHealth {
  up: boolean;
  /** Why it is down (for /healthz and logs). */
  detail?: string;
}

/**
 * Probes the agent service: `GET {url}/healthz` with the shared secret, up when it answers 200 within
 * `timeoutMs`. At most one probe is in flight, and a result is reused for `cacheMs`, so a load balancer polling
 * /healthz often costs the agent one request per interval at most.
 */
export function agentProbe(
  url: string,
  credential: string,
  { timeoutMs = 1_000, cacheMs = 500 }: { timeoutMs?: number; cacheMs?: number } = {},
): () => Promise<AgentHealth> {
  const probe = async (): Promise<AgentHealth> => {
    try {
      const res = await fetch(`${url}/healthz`, {
        headers: { authorization: `Bearer ${credential}` },
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body?.cancel();
      return res.status === 200
        ? { up: true }
        : { up: false, detail: `the agent answered HTTP ${res.status}` };
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      return { up: false, detail: cause ?? (err as Error).name };
    }
  };
  return cached(probe, cacheMs);
}

/**
 * Probes PostgreSQL with `SELECT 1` on the host's pool: up when it answers within `timeoutMs` (a server that
 * accepts connections and never answers counts as down after that long too). Like {@link agentProbe}, at most
 * one probe is in flight and a result is reused for `cacheMs`.
 */
export function postgresProbe(
  pool: Pick<pg.Pool, 'query'>,
  { timeoutMs = 1_000, cacheMs = 500 }: { timeoutMs?: number; cacheMs?: number } = {},
): () => Promise<AgentHealth> {
  // The query of a probe that timed out may still wait (for the pool's connection timeout): the next probes
  // wait on that same query rather than queueing more.
  let query: Promise<AgentHealth> | undefined;
  return cached(async () => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<AgentHealth>((resolve) => {
      timer = setTimeout(
        () => resolve({ up: false, detail: `PostgreSQL: no answer within ${timeoutMs} ms` }),
        timeoutMs,
      );
    });
    const answer = (query ??= pool
      .query('SELECT 1')
      .then(
        (): AgentHealth => ({ up: true }),
        (err: unknown): AgentHealth => {
          const e = err as { code?: unknown; message?: unknown };
          return { up: false, detail: `PostgreSQL: ${String(e.code ?? e.message ?? err)}` };
        },
      )
      .finally(() => (query = undefined)));
    try {
      return await Promise.race([answer, late]);
    } finally {
      clearTimeout(timer);
    }
  }, cacheMs);
}

/** One probe in flight at most, and its result reused for `cacheMs`. */
function cached(probe: () => Promise<AgentHealth>, cacheMs: number): () => Promise<AgentHealth> {
  let last: { at: number; result: AgentHealth } | undefined;
  let inFlight: Promise<AgentHealth> | undefined;
  return () => {
    if (last && Date.now() - last.at < cacheMs) return Promise.resolve(last.result);
    return (inFlight ??= probe().then((result) => {
      last = { at: Date.now(), result };
      inFlight = undefined;
      return result;
    }));
  };
}

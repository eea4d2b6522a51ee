import { AgentTransportError } from '../agent/agent-transport.js';

/** Bounds of an {@link AgentGate}. */
export interface AgentGateOptions {
  /** Most runs waiting at once; a run that would be one more ends at once (`agent_busy`). */
  maxWaiting: number;
  /** Longest a run waits, counted from when it first waited; then it ends (`agent_busy`). */
  timeoutMs: number;
  /** How long to wait before trying the agent again when it gave no Retry-After. */
  defaultRetryMs: number;
}

interface Waiter {
  userId: string;
  deadline: number;
  grant(): void;
  fail(error: unknown): void;
}

/** Shortest and longest pause between probes of an agent at capacity (whatever its Retry-After says). */
const MIN_PROBE_MS = 50;
const MAX_PROBE_MS = 30_000;

/**
 * @internal Shares the agent service's capacity between users once it answers "at capacity" (HTTP 429, the
 * transport's `agent_busy`). Runs then wait here instead of failing: in one bounded queue (length and wait),
 * served one at a time whenever a run that held a place at the agent ends (or, when none does, after the
 * agent's Retry-After). The next run served is one of the user with the fewest runs at the agent, ties going
 * round-robin to the user served least recently, so one user's many runs cannot starve another user's one.
 * While runs wait, new runs queue behind them rather than racing them for a freed place.
 */
export class AgentGate {
  readonly #options: AgentGateOptions;
  /** Waiting runs by user; each user's runs in arrival order. */
  readonly #waiting = new Map<string, Waiter[]>();
  #count = 0;
  /** Runs at the agent (past the gate, not refused) per user. */
  readonly #atAgent = new Map<string, number>();
  /** When each waiting user was last served (a counter, for round-robin ties). */
  readonly #served = new Map<string, number>();
  #turn = 0;
  /** Granted runs that have not yet said whether the agent took them. */
  #trying = 0;
  #probeTimer: ReturnType<typeof setTimeout> | undefined;
  #probeMs: number;

  constructor(options: AgentGateOptions) {
    this.#options = options;
    this.#probeMs = options.defaultRetryMs;
  }

  /** Runs waiting now. */
  get waiting(): number {
    return this.#count;
  }

  /** True when a new run must queue: others wait already. */
  get mustWait(): boolean {
    return this.#count > 0;
  }

  /**
   * Waits for this run's turn to try the agent. `since` is when the run first waited (the wait bound counts
   * from there across retries); `retry` puts it first in its user's line (it was served and refused again).
   * Rejects with AgentTransportError `agent_busy` when the queue is full or the wait is over, or with the
   * signal's reason when the run is stopped.
   */
  wait(userId: string, since: number, signal: AbortSignal, retry: boolean): Promise<void> {
    if (this.#count >= this.#options.maxWaiting) {
      return Promise.reject(
        new AgentTransportError(
          'agent_busy',
          `the agent service is at capacity and ${this.#count} runs already wait for it; try again later`,
        ),
      );
    }
    const deadline = since + this.#options.timeoutMs;
    return new Promise<void>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        userId,
        deadline,
        grant: () => {
          settle();
          resolve();
        },
        fail: (error) => {
          settle();
          reject(error);
        },
      };
      const onAbort = () => {
        this.#remove(waiter);
        waiter.fail(signal.reason);
      };
      const timer = setTimeout(
        () => {
          this.#remove(waiter);
          waiter.fail(
            new AgentTransportError(
              'agent_busy',
              `the agent service stayed at capacity for ${Math.round(this.#options.timeoutMs / 1000)} s; try again later`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      let line = this.#waiting.get(userId);
      if (!line) this.#waiting.set(userId, (line = []));
      if (retry) line.unshift(waiter);
      else line.push(waiter);
      this.#count++;
      this.#armProbe();
    });
  }

  /** A run of `userId` is trying the agent (after its turn, or straight away when nobody waited). */
  trying(userId: string, granted: boolean): void {
    if (granted) this.#trying++;
    this.#atAgent.set(userId, (this.#atAgent.get(userId) ?? 0) + 1);
  }

  /**
   * The agent answered that run: `taken` (streaming) or refused as at capacity (`retryAfterMs` from its
   * Retry-After, if any). A taken run that had waited lets the next one try: the agent may have room for more.
   */
  answered(userId: string, granted: boolean, taken: boolean, retryAfterMs?: number): void {
    if (granted) this.#trying--;
    if (!taken) {
      this.#leave(userId);
      const ms = retryAfterMs ?? this.#options.defaultRetryMs;
      this.#probeMs = Math.min(MAX_PROBE_MS, Math.max(MIN_PROBE_MS, ms));
      return;
    }
    if (granted) this.#serveOne();
  }

  /** A run that was at the agent ended: its place there is free for the next waiting run. */
  released(userId: string): void {
    this.#leave(userId);
    this.#serveOne();
  }

  #leave(userId: string): void {
    const n = (this.#atAgent.get(userId) ?? 1) - 1;
    if (n <= 0) this.#atAgent.delete(userId);
    else this.#atAgent.set(userId, n);
  }

  #remove(waiter: Waiter): void {
    const line = this.#waiting.get(waiter.userId);
    const i = line ? line.indexOf(waiter) : -1;
    if (!line || i === -1) return;
    line.splice(i, 1);
    this.#count--;
    if (line.length === 0) {
      this.#waiting.delete(waiter.userId);
      this.#served.delete(waiter.userId);
    }
  }

  /** Lets the next waiting run try: fewest runs at the agent first, then the user served least recently. */
  #serveOne(): void {
    let best: string | undefined;
    let bestAt = Infinity;
    let bestServed = Infinity;
    for (const userId of this.#waiting.keys()) {
      const at = this.#atAgent.get(userId) ?? 0;
      const served = this.#served.get(userId) ?? -1;
      if (at < bestAt || (at === bestAt && served < bestServed)) {
        best = userId;
        bestAt = at;
        bestServed = served;
      }
    }
    if (best === undefined) return;
    const waiter = this.#waiting.get(best)![0]!;
    this.#remove(waiter);
    if (this.#waiting.has(best)) this.#served.set(best, ++this.#turn);
    waiter.grant();
    this.#armProbe();
  }

  /**
   * While runs wait and none is trying, one is let through after the agent's Retry-After: capacity may free
   * up without a run of this relay ending (another relay's run, the agent restarting).
   */
  #armProbe(): void {
    if (this.#count === 0) {
      clearTimeout(this.#probeTimer);
      this.#probeTimer = undefined;
      return;
    }
    if (this.#probeTimer !== undefined) return;
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      if (this.#trying === 0) this.#serveOne();
      else this.#armProbe();
    }, this.#probeMs);
    this.#probeTimer.unref?.();
  }
}

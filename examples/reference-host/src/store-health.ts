import type { Relay, RelayHealth } from '@threadline/relay';
import type { UserStore } from './users/user-store.js';

/** What one store's writes showed: the same shape as the relay's `health().store`. */
export type StoreState = RelayHealth['store'];

/** The stores' state for a health check: `degraded` while either store cannot write. */
export interface StoreHealth {
  status: 'ok' | 'degraded';
  /** The relay's event store (threads, runs, events). */
  events: StoreState;
  /** The users and sessions store. */
  users: StoreState;
  /** Runs whose ending could not be stored yet; their threads answer `run_active` until it is. */
  unterminatedRuns: number;
}

/** User store methods that write (reads still work on a full disk, so they say nothing about it). */
const USER_STORE_WRITES = new Set<PropertyKey>([
  'createUser',
  'createUserWithIdentity',
  'addIdentity',
  'createSession',
  'deleteSession',
  'deleteExpiredSessions',
]);

/**
 * Wraps a user store so that every write's outcome is recorded: `state` is not writable from a failed write
 * until a write succeeds again. Refusals that are answers (a taken username) count as successes.
 *
 * @example
 * const { users, state } = watchUserStore(new SqliteUserStore(path));
 */
export function watchUserStore(store: UserStore): { users: UserStore; state: () => StoreState } {
  const state: StoreState = { writable: true };
  const users = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (!USER_STORE_WRITES.has(prop)) return value.bind(target);
      return async (...args: unknown[]) => {
        try {
          const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          state.writable = true;
          delete state.failingSince;
          return result;
        } catch (error) {
          const code = (error as { code?: unknown } | null)?.code;
          if (code === 'username_taken' || code === 'identity_taken') {
            state.writable = true;
            delete state.failingSince;
          } else {
            const at = Date.now();
            if (state.writable) state.failingSince = at;
            state.writable = false;
            state.lastError = { at, message: error instanceof Error ? error.message : String(error) };
          }
          throw error;
        }
      };
    },
  });
  return { users, state: () => ({ ...state }) };
}

/**
 * Reports whether the host's stores can write, for `/healthz`: `degraded` while the relay's store or the user
 * store cannot (e.g. a full disk), with the last error of each. No I/O: it reports what the last writes saw.
 *
 * @example
 * res.json({ status: storeHealth(relay, users.state).status });
 */
export function storeHealth(relay: Pick<Relay, 'health'>, users: () => StoreState): StoreHealth {
  const relayHealth = relay.health();
  const userState = users();
  return {
    status: relayHealth.store.writable && userState.writable ? 'ok' : 'degraded',
    events: relayHealth.store,
    users: userState,
    unterminatedRuns: relayHealth.unterminatedRuns,
  };
}

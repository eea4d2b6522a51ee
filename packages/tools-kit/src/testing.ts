import type { JsonValue } from '@threadline/contracts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_RUN_STATE_LENGTH } from './store.js';
import type { ToolStore } from './store.js';

/**
 * @threadline/tools-kit/testing: the conformance suite of the {@link ToolStore} port, for vitest. Run it on
 * your own adapter to know the tool router and the built-in tools can rely on it.
 */

/** What a tool-store conformance factory returns: a fresh (or freshly namespaced) store and how to dispose of it. */
export interface ToolStoreConformanceStore {
  store: ToolStore;
  /** Called after each test: close the store, delete files, drop databases. */
  cleanup?(): Promise<void>;
}

/** Options of {@link runToolStoreConformance}. */
export interface ToolStoreConformanceOptions {
  /**
   * The error the adapter refuses bad input with, matched by `name` and `code` (so copies of the class across
   * bundles match). Default `{ name: 'ToolsKitError', code: 'invalid_value' }`, what `MemoryToolStore` throws;
   * the relay's stores throw `{ name: 'StoreError', code: 'invalid_message' }`.
   */
  invalidInput?: { name: string; code: string };
}

let counter = 0;
/** Ids unique per test, so a factory may hand out stores that share one database. */
function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/**
 * Runs the {@link ToolStore} conformance suite (vitest `describe`/`it`) against an adapter: session items,
 * profiles, idempotent results and paused runs' states, with the input every adapter refuses.
 *
 * `makeStore` is called before each test. Tests use ids unique to the test, so it may return stores that
 * share one database; `cleanup` runs after each test.
 *
 * @example
 * import { runToolStoreConformance } from '@threadline/tools-kit/testing';
 * runToolStoreConformance('my store', async () => ({ store: await openMyStore(), cleanup: dropDatabase }));
 */
export function runToolStoreConformance(
  name: string,
  makeStore: () => Promise<ToolStoreConformanceStore>,
  options: ToolStoreConformanceOptions = {},
): void {
  const invalid = options.invalidInput ?? { name: 'ToolsKitError', code: 'invalid_value' };

  /** Asserts a rejection with the adapter's bad-input error. */
  async function expectRefused(promise: Promise<unknown>): Promise<void> {
    let caught: unknown;
    try {
      await promise;
    } catch (error) {
      caught = error;
    }
    expect(caught, `expected a ${invalid.name} with code "${invalid.code}"`).toBeInstanceOf(Error);
    expect((caught as Error).name).toBe(invalid.name);
    expect((caught as { code?: unknown }).code).toBe(invalid.code);
  }

  describe(`ToolStore conformance: ${name}`, () => {
    let current: ToolStoreConformanceStore | undefined;
    let store: ToolStore;

    beforeEach(async () => {
      current = await makeStore();
      store = current.store;
    });
    afterEach(async () => {
      const done = current;
      current = undefined;
      await done?.cleanup?.();
    });

    describe('session items', () => {
      it('adds, gets the last N oldest first, pops the newest and clears, per thread', async () => {
        const t = uid('t');
        const other = uid('t');
        expect(await store.getSessionItems(t)).toEqual([]);
        expect(await store.popSessionItem(t)).toBeNull();
        await store.addSessionItems(t, [{ role: 'user', content: 'a' }, 'b']);
        await store.addSessionItems(t, [3, null, [true]]);
        await store.addSessionItems(other, ['x']);
        expect(await store.getSessionItems(t)).toEqual([
          { role: 'user', content: 'a' },
          'b',
          3,
          null,
          [true],
        ]);
        expect(await store.getSessionItems(t, 2)).toEqual([null, [true]]);
        expect(await store.getSessionItems(t, 100)).toHaveLength(5);
        expect(await store.popSessionItem(t)).toEqual([true]);
        expect(await store.getSessionItems(t, 1)).toEqual([null]);
        // A stored JSON null is an item, distinct from "no item".
        expect(await store.popSessionItem(t)).toBeNull();
        expect(await store.getSessionItems(t)).toEqual([{ role: 'user', content: 'a' }, 'b', 3]);
        await store.clearSession(t);
        expect(await store.getSessionItems(t)).toEqual([]);
        expect(await store.getSessionItems(other)).toEqual(['x']);
        await store.addSessionItems(t, []);
        expect(await store.getSessionItems(t)).toEqual([]);
      });

      it('refuses non-JSON items and adds none of the batch', async () => {
        const t = uid('t');
        await store.addSessionItems(t, ['keep']);
        const bad = [['ok'], { f: () => 1 }] as unknown as JsonValue[];
        await expectRefused(store.addSessionItems(t, bad));
        await expectRefused(store.addSessionItems(t, ['ok', Number.NaN]));
        await expectRefused(store.addSessionItems(t, [JSON.parse('{"__proto__":{"x":1}}') as JsonValue]));
        expect(await store.getSessionItems(t)).toEqual(['keep']);
        await expectRefused(store.getSessionItems(t, 0));
      });

      it('returns copies: mutating a returned item does not change the store', async () => {
        const t = uid('t');
        const item = { n: 1 };
        await store.addSessionItems(t, [item]);
        item.n = 2;
        const [got] = (await store.getSessionItems(t)) as { n: number }[];
        expect(got).toEqual({ n: 1 });
        got!.n = 3;
        expect(await store.getSessionItems(t)).toEqual([{ n: 1 }]);
      });
    });

    describe('profile', () => {
      it('shallow-merges patches, deletes keys set to null, and returns the result', async () => {
        const user = uid('u');
        expect(await store.getProfile(user)).toEqual({});
        expect(
          await store.patchProfile(user, { displayName: 'Ada', city: 'Paris', prefs: { a: 1 } }),
        ).toEqual({
          displayName: 'Ada',
          city: 'Paris',
          prefs: { a: 1 },
        });
        expect(await store.patchProfile(user, { city: null, prefs: { b: 2 } })).toEqual({
          displayName: 'Ada',
          prefs: { b: 2 },
        });
        expect(await store.getProfile(user)).toEqual({ displayName: 'Ada', prefs: { b: 2 } });
        expect(await store.getProfile(uid('u'))).toEqual({});
      });

      it('refuses a non-object patch or a forbidden key, changing nothing', async () => {
        const user = uid('u');
        await store.patchProfile(user, { a: 1 });
        await expectRefused(store.patchProfile(user, [1] as unknown as Record<string, JsonValue>));
        await expectRefused(
          store.patchProfile(user, JSON.parse('{"__proto__":{"admin":true}}') as Record<string, JsonValue>),
        );
        await expectRefused(
          store.patchProfile(user, { a: 2, b: undefined } as unknown as Record<string, JsonValue>),
        );
        expect(await store.getProfile(user)).toEqual({ a: 1 });
        expect(({} as Record<string, unknown>)['admin']).toBeUndefined();
      });

      it('applies concurrent patches to different keys without losing one', async () => {
        const user = uid('u');
        await Promise.all(Array.from({ length: 20 }, (_, i) => store.patchProfile(user, { [`k${i}`]: i })));
        const profile = await store.getProfile(user);
        expect(Object.keys(profile).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`).sort());
      });
    });

    describe('idempotency', () => {
      it('keeps the first value written under a key', async () => {
        const key = uid('idem');
        expect(await store.getIdempotent(key)).toBeNull();
        expect(await store.putIdempotent(key, { ok: true, n: 1 })).toEqual({ ok: true, n: 1 });
        expect(await store.putIdempotent(key, { ok: true, n: 2 })).toEqual({ ok: true, n: 1 });
        expect(await store.getIdempotent(key)).toEqual({ ok: true, n: 1 });
        await expectRefused(store.putIdempotent('', 1));
        await expectRefused(store.putIdempotent('k'.repeat(1025), 1));
        expect(await store.putIdempotent('k'.repeat(1024), 7)).toBe(7);
        await expectRefused(store.putIdempotent(uid('idem'), undefined as unknown as JsonValue));
      });

      it('returns the same winner to every concurrent writer', async () => {
        const key = uid('idem');
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.putIdempotent(key, { n: i })),
        );
        const winner = results[0];
        expect(results.every((r) => JSON.stringify(r) === JSON.stringify(winner))).toBe(true);
        expect(await store.getIdempotent(key)).toEqual(winner);
      });
    });

    describe('run states', () => {
      it('saves, replaces, reads and deletes a paused run state per thread and run', async () => {
        const t = uid('t');
        const r = uid('r');
        expect(await store.getRunState(t, r)).toBeNull();
        const big = `{"state":"${'é😀'.repeat(50_000)}"}`;
        await store.putRunState(t, r, big);
        expect(await store.getRunState(t, r)).toBe(big);
        await store.putRunState(t, r, 'second');
        expect(await store.getRunState(t, r)).toBe('second');
        // Scoped: another run of the thread and the same run id in another thread see nothing.
        expect(await store.getRunState(t, uid('r'))).toBeNull();
        expect(await store.getRunState(uid('t'), r)).toBeNull();
        await store.deleteRunState(t, r);
        expect(await store.getRunState(t, r)).toBeNull();
        await store.deleteRunState(t, r);
        await expectRefused(store.putRunState('bad id', r, 'x'));
        await expectRefused(store.getRunState(t, ''));
        await expectRefused(store.putRunState(t, r, 5 as unknown as string));
        await expectRefused(store.putRunState(t, r, 'x'.repeat(MAX_RUN_STATE_LENGTH + 1)));
        expect(await store.getRunState(t, r)).toBeNull();
      });
    });
  });
}

import { afterEach, beforeEach, describe } from 'vitest';
import { appendCases, appendManyCases } from './conformance/events.js';
import type { ConformanceStore, SuiteContext } from './conformance/fixtures.js';
import { uid } from './conformance/fixtures.js';
import { leaseCases } from './conformance/leases.js';
import { closeCases, retentionCases } from './conformance/retention.js';
import { runCases, startRunsCases } from './conformance/runs.js';
import { renameDeleteCases, threadCases } from './conformance/threads.js';
import type { EventStore } from './store.js';

export type { ConformanceStore } from './conformance/fixtures.js';

/**
 * Runs the EventStore conformance suite (vitest `describe`/`it`) against an adapter. Every adapter shipped
 * with `@threadline/relay` passes it; run it on your own adapter to know the relay can rely on it. The
 * storage of the tool router (a `ToolStore`) has its own suite, tools-kit's `runToolStoreConformance`; a
 * store that implements both ports is also checked here to delete a thread's session with the thread.
 *
 * `makeStore` is called before each test. Tests use ids unique to the test, so it may return stores that
 * share one database; `cleanup` runs after `store.close()`.
 *
 * @example
 * import { runStoreConformance } from '@threadline/relay/testing';
 * runStoreConformance('my store', async () => ({ store: await openMyStore(), cleanup: dropDatabase }));
 */
export function runStoreConformance(name: string, makeStore: () => Promise<ConformanceStore>): void {
  describe(`EventStore conformance: ${name}`, () => {
    let current: ConformanceStore | undefined;
    let store: EventStore;

    beforeEach(async () => {
      current = await makeStore();
      store = current.store;
    });
    afterEach(async () => {
      const done = current;
      current = undefined;
      if (!done) return;
      await done.store.close();
      await done.cleanup?.();
    });

    const suite: SuiteContext = {
      get store() {
        return store;
      },
      get current() {
        return current;
      },
      async newThread(ownerId = 'user-1') {
        const threadId = uid('t');
        await store.createThread({ threadId, ownerId });
        return threadId;
      },
    };

    threadCases(suite);
    appendCases(suite);
    appendManyCases(suite);
    startRunsCases(suite);
    runCases(suite);
    leaseCases(suite);
    renameDeleteCases(suite);
    retentionCases(suite);
    closeCases(suite);
  });
}

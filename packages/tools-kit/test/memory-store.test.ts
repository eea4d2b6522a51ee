import { runToolStoreConformance } from '../src/testing.js';
import { MemoryToolStore } from '../src/memory-store.js';

runToolStoreConformance('memory', async () => ({ store: new MemoryToolStore() }));

/**
 * Test helpers for adapters of the relay's storage port: the EventStore conformance suite (runs under vitest,
 * an optional peer dependency of this entry point).
 */
export { runStoreConformance } from './stores/conformance.js';
export type { ConformanceStore } from './stores/conformance.js';

/** Persist, sequence, fan out and resume Threadline agent runs; SQLite, MongoDB and memory stores; WebSocket transport. (testing: not built yet) */
export const PLACEHOLDER_TESTING = true;

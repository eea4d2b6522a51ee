/** Persist, sequence, fan out and resume Threadline agent runs; SQLite, MongoDB and memory stores; WebSocket transport. (memory: not built yet) */
export const PLACEHOLDER_MEMORY = true;

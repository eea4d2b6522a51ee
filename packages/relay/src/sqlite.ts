/** Persist, sequence, fan out and resume Threadline agent runs; SQLite, MongoDB and memory stores; WebSocket transport. (sqlite: not built yet) */
export const PLACEHOLDER_SQLITE = true;

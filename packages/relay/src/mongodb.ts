/** Persist, sequence, fan out and resume Threadline agent runs; SQLite, MongoDB and memory stores; WebSocket transport. (mongodb: not built yet) */
export const PLACEHOLDER_MONGODB = true;

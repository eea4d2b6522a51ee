/** Persist, sequence, fan out and resume Threadline agent runs; SQLite, MongoDB and memory stores; WebSocket transport. (index: not built yet) */
export const PLACEHOLDER_INDEX = true;

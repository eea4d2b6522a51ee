import { ID_PATTERN, LIMITS } from '@threadline/contracts';
import type { AgentEvent } from '@threadline/contracts';

const CHUNK_KEYS = 6; // type, threadId, runId, ts, messageId, delta

/**
 * The ids one stream (or one batch) last validated; each starts unset, so the first of each is checked. Per
 * stream, not shared: with many runs interleaving, a single shared slot missed on almost every event and
 * re-ran the id check each time.
 */
export interface ChunkIdCache {
  threadId?: string;
  runId?: string;
  messageId?: string;
}

/** The contract's IdSchema, without the schema walk. */
function isId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= LIMITS.maxIdLength &&
    ID_PATTERN.test(value)
  );
}

/**
 * The hot path of streaming: a TEXT_MESSAGE_CHUNK checked field by field, to exactly the contract's rules,
 * without a schema walk per token. `threadId` / `runId`: the ids it must carry, or null for any valid id.
 * False for anything else or anything unusual: the caller then validates it with the contract's schema
 * (which also words the error).
 */
export function isPlainChunk(
  value: unknown,
  threadId: string | null,
  runId: string | null,
  seen: ChunkIdCache,
): value is AgentEvent {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  if (e.type !== 'TEXT_MESSAGE_CHUNK') return false;
  if (threadId !== null) {
    if (e.threadId !== threadId) return false;
  } else if (typeof e.threadId !== 'string') return false;
  else if (e.threadId !== seen.threadId) {
    if (!isId(e.threadId)) return false;
    seen.threadId = e.threadId;
  }
  if (runId !== null) {
    if (e.runId !== runId) return false;
  } else if (typeof e.runId !== 'string') return false;
  else if (e.runId !== seen.runId) {
    if (!isId(e.runId)) return false;
    seen.runId = e.runId;
  }
  const { ts, delta, messageId } = e;
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return false;
  if (typeof delta !== 'string' || delta.length > LIMITS.maxDeltaLength) return false;
  // A string first: an unset cache slot is undefined, and so is a missing key.
  if (typeof messageId !== 'string') return false;
  if (messageId !== seen.messageId) {
    if (!isId(messageId)) return false;
    seen.messageId = messageId;
  }
  if (Object.getPrototypeOf(e) !== Object.prototype) return false;
  // Exactly those six keys (the schema is strict), all of them own keys.
  let keys = 0;
  for (const key in e) {
    if (!Object.hasOwn(e, key)) return false;
    keys++;
  }
  return keys === CHUNK_KEYS;
}

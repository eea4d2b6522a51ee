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
 * `value` is `expected`, or (`expected` null) any valid id: each distinct one checked once, then remembered.
 * A string first: an unset cache slot is undefined, and so is a missing key.
 */
function idOk(
  value: unknown,
  expected: string | null,
  seen: ChunkIdCache,
  key: keyof ChunkIdCache,
): value is string {
  if (expected !== null) return value === expected;
  if (typeof value !== 'string') return false;
  if (value !== seen[key]) {
    if (!isId(value)) return false;
    seen[key] = value;
  }
  return true;
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
  if (!idOk(e.threadId, threadId, seen, 'threadId') || !idOk(e.runId, runId, seen, 'runId')) return false;
  const { ts, delta } = e;
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return false;
  // `.length`: UTF-16 code units, the unit of every contract limit.
  if (typeof delta !== 'string' || delta.length > LIMITS.maxDeltaLength) return false;
  if (!idOk(e.messageId, null, seen, 'messageId')) return false;
  if (Object.getPrototypeOf(e) !== Object.prototype) return false;
  // Exactly those six keys (the schema is strict), all of them own keys.
  let keys = 0;
  for (const key in e) {
    if (!Object.hasOwn(e, key)) return false;
    keys++;
  }
  return keys === CHUNK_KEYS;
}

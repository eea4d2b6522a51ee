import type { StoredEvent } from '../stores/store.js';

// The Redis adapter's message format on a thread's channel, and the server URL as its log lines show it.

/** `[instanceId, seq, json, seq, json, ...]`: JSON, so any client of any language could read it. */
export function encode(from: string, events: readonly StoredEvent[]): string {
  const parts: (string | number)[] = [from];
  for (const e of events) parts.push(e.seq, e.json);
  return JSON.stringify(parts);
}

/** The events of a channel message and the instance that published them; `null` for anything else. */
export function decode(message: string): { from: string; events: StoredEvent[] } | null {
  let parts: unknown;
  try {
    parts = JSON.parse(message);
  } catch {
    return null;
  }
  if (!Array.isArray(parts) || parts.length < 3 || parts.length % 2 === 0 || typeof parts[0] !== 'string')
    return null;
  const events: StoredEvent[] = [];
  for (let i = 1; i < parts.length; i += 2) {
    const seq: unknown = parts[i];
    const json: unknown = parts[i + 1];
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1 || typeof json !== 'string')
      return null;
    events.push({ seq, json });
  }
  return { from: parts[0], events };
}

/** The URL without its password, for log lines. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}

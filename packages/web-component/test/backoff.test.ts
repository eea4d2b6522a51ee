import { describe, expect, it } from 'vitest';
import { DEFAULT_RECONNECT, backoffDelay, resolveReconnect } from '../src/backoff.js';

describe('backoff', () => {
  it('doubles from the base, stays within [cap/2, cap] and never exceeds maxDelayMs', () => {
    const o = { baseDelayMs: 100, maxDelayMs: 1_000, maxAttempts: 5 };
    expect(backoffDelay(1, o, () => 0)).toBe(50);
    expect(backoffDelay(1, o, () => 1)).toBe(100);
    expect(backoffDelay(3, o, () => 1)).toBe(400);
    for (let attempt = 1; attempt < 200; attempt++) {
      const d = backoffDelay(attempt, o);
      expect(d).toBeGreaterThanOrEqual(Math.min(1_000, 100 * 2 ** (attempt - 1)) / 2);
      expect(d).toBeLessThanOrEqual(1_000);
    }
  });

  it('spreads clients apart (jitter)', () => {
    const o = resolveReconnect({});
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(4, o)));
    expect(delays.size).toBeGreaterThan(10);
  });

  it('clamps nonsense options to bounded values', () => {
    expect(resolveReconnect(undefined)).toEqual(DEFAULT_RECONNECT);
    const r = resolveReconnect({ baseDelayMs: -5, maxDelayMs: Number.NaN, maxAttempts: 1e9 });
    expect(r.baseDelayMs).toBe(1);
    expect(r.maxDelayMs).toBe(15_000);
    expect(r.maxAttempts).toBe(1_000);
    expect(resolveReconnect({ baseDelayMs: 5_000, maxDelayMs: 10 }).maxDelayMs).toBe(5_000);
  });
});

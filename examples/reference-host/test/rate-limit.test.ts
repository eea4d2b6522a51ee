import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/rate-limit.js';

describe('RateLimiter', () => {
  it('allows `limit` hits per window, then refuses until the window resets', () => {
    let now = 0;
    const r = new RateLimiter({ limit: 2, windowMs: 100, now: () => now });
    expect([r.hit('a'), r.hit('a'), r.hit('a')]).toEqual([true, true, false]);
    expect(r.hit('b')).toBe(true);
    now = 100;
    expect(r.hit('a')).toBe(true);
  });

  it('tracks at most maxKeys keys, dropping the oldest', () => {
    const r = new RateLimiter({ limit: 1, windowMs: 60_000, maxKeys: 3, now: () => 0 });
    for (const k of ['a', 'b', 'c', 'd', 'e']) r.hit(k);
    expect(r.size).toBe(3);
    // 'e' is still tracked (refused on its second hit); 'a' was dropped so it starts over.
    expect(r.hit('e')).toBe(false);
    expect(r.hit('a')).toBe(true);
  });

  it('forgive takes one hit back, reset forgets the key, and retryAfterSeconds counts down to the reset', () => {
    let now = 0;
    const r = new RateLimiter({ limit: 2, windowMs: 10_000, now: () => now });
    r.hit('a');
    r.hit('a');
    r.forgive('a');
    expect(r.hit('a')).toBe(true);
    expect(r.hit('a')).toBe(false);
    now = 2_500;
    expect(r.retryAfterSeconds('a')).toBe(8);
    r.reset('a');
    expect(r.size).toBe(0);
    expect(r.hit('a')).toBe(true);
    expect(r.retryAfterSeconds('unknown')).toBe(1);
  });
});

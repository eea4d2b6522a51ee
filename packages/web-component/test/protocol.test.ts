import { BROWSER_ERROR_CODES, EVENT_TYPES, ID_PATTERN, LIMITS } from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import { FATAL_ERROR_CODES, KNOWN_EVENT_TYPES, WIRE_ID_PATTERN, WIRE_LIMITS } from '../src/protocol.js';

// protocol.ts mirrors contract constants to keep zod out of the browser bundle; these fail on any drift.
describe('contract mirrors', () => {
  it('match @threadline/contracts', () => {
    for (const [key, value] of Object.entries(WIRE_LIMITS))
      expect(value, key).toBe(LIMITS[key as keyof typeof LIMITS]);
    expect(WIRE_ID_PATTERN.source).toBe(ID_PATTERN.source);
    expect([...KNOWN_EVENT_TYPES]).toEqual([...EVENT_TYPES]);
    for (const code of FATAL_ERROR_CODES) expect(BROWSER_ERROR_CODES).toContain(code);
  });
});

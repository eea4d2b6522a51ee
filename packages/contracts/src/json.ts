import { z } from 'zod';
import { LIMITS } from './limits.js';

/** Object keys that must never appear in payloads: they can poison prototypes in naive merges. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** A JSON value as it appears on the wire. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * Returns the path of the first thing in `value` that is not plain JSON (undefined, a function, a symbol,
 * a bigint, NaN, Infinity, a class instance, a forbidden key, or nesting past the depth limit), or null.
 */
export function findNonJson(
  value: unknown,
  depth = 0,
  path: (string | number)[] = [],
): { path: (string | number)[]; reason: string } | null {
  if (depth > LIMITS.maxJsonDepth) return { path, reason: `nested deeper than ${LIMITS.maxJsonDepth}` };
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return null;
  if (typeof value === 'number')
    return Number.isFinite(value) ? null : { path, reason: 'not a finite number' };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findNonJson(value[i], depth + 1, [...path, i]);
      if (found) return found;
    }
    return null;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return { path, reason: 'not a plain object' };
    for (const key of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(key)) return { path: [...path, key], reason: `forbidden key "${key}"` };
      const found = findNonJson((value as Record<string, unknown>)[key], depth + 1, [...path, key]);
      if (found) return found;
    }
    return null;
  }
  return { path, reason: `a ${typeof value} is not JSON` };
}

// zod's own json/record schemas copy objects key by key, which turns an own "__proto__" key into a prototype
// and hides it from any later check. So these schemas check the raw input and pass it through unchanged.

/** Any JSON value, rejecting non-JSON values, forbidden keys and excessive depth. */
export const JsonValueSchema: z.ZodType<JsonValue> = z
  .any()
  .superRefine((value, ctx) => {
    const found = findNonJson(value);
    if (found) ctx.addIssue({ code: 'custom', message: found.reason, path: found.path });
  })
  .meta({
    description: 'Any JSON value (no __proto__/constructor/prototype keys, bounded depth).',
  }) as unknown as z.ZodType<JsonValue>;

/** A JSON object (string keys, JSON values). */
export const JsonObjectSchema: z.ZodType<{ [key: string]: JsonValue }> = z
  .any()
  .superRefine((value, ctx) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      ctx.addIssue({ code: 'custom', message: 'expected object' });
      return;
    }
    const found = findNonJson(value);
    if (found) ctx.addIssue({ code: 'custom', message: found.reason, path: found.path });
  })
  .meta({
    type: 'object',
    description: 'A JSON object (no __proto__/constructor/prototype keys, bounded depth).',
  }) as unknown as z.ZodType<{
  [key: string]: JsonValue;
}>;

import { RelayError } from './errors.js';

// How every factory of this package checks its options: one code (`invalid_options`), a message that names the
// factory and the option.

/** A RelayError `invalid_options` that names the factory. */
export function optionsError(factory: string, message: string): RelayError {
  return new RelayError('invalid_options', `${factory}: ${message}`);
}

/** Throws unless `options` is an object (the factory's options argument). */
export function checkOptionsObject(factory: string, options: unknown): asserts options is object {
  if (typeof options !== 'object' || options === null)
    throw optionsError(factory, 'options must be an object');
}

/** Throws unless `value` is a function (or undefined, when the option is optional). */
export function checkFunctionOption(factory: string, name: string, value: unknown, required = false): void {
  if (value === undefined && !required) return;
  if (typeof value !== 'function') throw optionsError(factory, `${name} must be a function`);
}

/**
 * Throws unless every field of `limits` named in `defaults` is a safe integer of at least `min` (0 or 1).
 * `group` is the option's name in messages (`limits`, `tuning`).
 */
export function checkIntegerLimits(
  factory: string,
  limits: object | undefined,
  defaults: Readonly<Record<string, number>>,
  min: (key: string) => number,
  group = 'limits',
): void {
  if (limits === undefined) return;
  if (typeof limits !== 'object' || limits === null)
    throw optionsError(factory, `${group} must be an object`);
  for (const [key, value] of Object.entries(limits)) {
    if (!Object.hasOwn(defaults, key)) throw optionsError(factory, `${group}.${key} is not a known option`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min(key))
      throw optionsError(
        factory,
        `${group}.${key} must be an integer of at least ${min(key)}, got ${String(value)}`,
      );
  }
}

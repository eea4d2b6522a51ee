import { ToolsKitError } from './errors.js';

/** Reads an integer option within [min, max], or its default; anything else is an `invalid_options` error. */
export function intOption(
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
  name: string,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ToolsKitError('invalid_options', `${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

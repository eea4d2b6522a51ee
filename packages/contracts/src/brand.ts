/**
 * `instanceof` for an error class across copies of its package: the ESM and CommonJS builds loaded in one
 * process, or two installed versions. The class puts `brand` (a `Symbol.for` key named after the package and
 * class) on its prototype and calls this from `static [Symbol.hasInstance]`; a value matches when it is a real
 * instance, or when it carries the brand and a class of the same name is on its prototype chain (so subclasses
 * still match only their own name and below).
 *
 * @example
 * const BRAND = Symbol.for('@acme/pkg/AcmeError');
 * class AcmeError extends Error {
 *   static { Object.defineProperty(this.prototype, BRAND, { value: true }); }
 *   static override [Symbol.hasInstance](value: unknown) { return isBrandedInstance(this, value, BRAND); }
 * }
 */
export function isBrandedInstance(
  cls: abstract new (...args: never[]) => unknown,
  value: unknown,
  brand: symbol,
): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (Function.prototype[Symbol.hasInstance].call(cls, value)) return true;
  if ((value as Record<symbol, unknown>)[brand] !== true) return false;
  for (let p: unknown = Object.getPrototypeOf(value); p !== null; p = Object.getPrototypeOf(p)) {
    const ctor = Object.hasOwn(p as object, 'constructor')
      ? (p as { constructor: unknown }).constructor
      : undefined;
    if (typeof ctor === 'function' && ctor.name === cls.name) return true;
  }
  return false;
}

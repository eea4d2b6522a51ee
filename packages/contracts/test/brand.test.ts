import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isBrandedInstance } from '../src/index.js';

const BRAND = Symbol.for('@threadline/test/BrandError');

function makeClasses() {
  class BrandError extends Error {
    static {
      Object.defineProperty(this.prototype, BRAND, { value: true });
    }
    static override [Symbol.hasInstance](value: unknown): boolean {
      return isBrandedInstance(this, value, BRAND);
    }
  }
  class SubError extends BrandError {}
  return { BrandError, SubError };
}

describe('isBrandedInstance', () => {
  it('matches instances of another copy of the class by brand and name, subclasses only downwards', () => {
    const a = makeClasses();
    const b = makeClasses(); // a second copy, as an ESM and a CommonJS build would be
    expect(new b.BrandError()).toBeInstanceOf(a.BrandError);
    expect(new b.SubError()).toBeInstanceOf(a.BrandError);
    expect(new b.SubError()).toBeInstanceOf(a.SubError);
    expect(new b.BrandError() instanceof a.SubError).toBe(false);
  });

  it('refuses values without the brand, and non-objects', () => {
    const { BrandError } = makeClasses();
    class BrandErrorLookalike extends Error {}
    Object.defineProperty(BrandErrorLookalike, 'name', { value: 'BrandError' });
    expect(new BrandErrorLookalike() instanceof BrandError).toBe(false);
    expect(new Error('x') instanceof BrandError).toBe(false);
    for (const v of [null, undefined, 'BrandError', 42])
      expect((v as unknown) instanceof BrandError).toBe(false);
  });
});

describe('@threadline/contracts/core', () => {
  it('needs no zod: neither its source modules nor its build import it', () => {
    for (const file of [
      '../src/core.ts',
      '../src/limits.ts',
      '../src/brand.ts',
      '../src/http-headers.ts',
      '../src/agent-http.ts',
      '../src/event-types.ts',
    ]) {
      expect(readFileSync(new URL(file, import.meta.url), 'utf8'), file).not.toMatch(/from 'zod'/);
    }
  });
});

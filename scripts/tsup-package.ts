import type { Options } from 'tsup';

/**
 * The build every Node package of this repository shares: ESM and CommonJS with type declarations and source
 * maps, for the oldest Node that `engines` allows. `extra` adds or overrides options for one package.
 */
export function nodePackage(entry: Record<string, string>, extra: Options = {}): Options {
  return {
    entry,
    format: ['esm', 'cjs'],
    dts: true,
    target: 'node22',
    clean: true,
    sourcemap: true,
    splitting: false,
    ...extra,
  };
}

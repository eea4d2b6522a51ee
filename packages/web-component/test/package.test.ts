import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

interface Manifest {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

const root = new URL('../', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as Manifest;
const require = createRequire(new URL('package.json', root));

/** Packages the element's sources import, for types (`import type`) or at run time. */
function imported(): { types: Set<string>; runtime: Set<string>; runtimeSpecifiers: Set<string> } {
  const types = new Set<string>();
  const runtime = new Set<string>();
  const runtimeSpecifiers = new Set<string>();
  const dir = new URL('src/', root);
  for (const file of readdirSync(dir)) {
    const text = readFileSync(new URL(file, dir), 'utf8');
    for (const m of text.matchAll(/^import (type )?[^'"]*from '([^'.][^']*)';/gm)) {
      const name = (m[2] as string).startsWith('@')
        ? (m[2] as string).split('/').slice(0, 2).join('/')
        : (m[2] as string).split('/')[0]!;
      (m[1] ? types : runtime).add(name);
      if (!m[1]) runtimeSpecifiers.add(m[2] as string);
    }
  }
  return { types, runtime, runtimeSpecifiers };
}

describe('package manifest', () => {
  it('declares every package its code and published types import', () => {
    const { types, runtime, runtimeSpecifiers } = imported();
    // At run time: lit, and only the zod-free part of the contracts (no zod in the browser bundle).
    expect(runtime).toEqual(new Set(['lit', '@threadline/contracts']));
    for (const spec of runtimeSpecifiers)
      if (spec.startsWith('@threadline/contracts')) expect(spec).toBe('@threadline/contracts/core');
    for (const name of [...types, ...runtime]) expect(manifest.dependencies).toHaveProperty([name]);
  });

  it("forwards the peers of its type-only dependencies as optional peers (zod, for @threadline/contracts' types)", () => {
    // The d.ts names types from @threadline/contracts, which are z.infer<> of zod schemas and need zod's
    // types. Strict package managers (Yarn PnP, pnpm without auto-install-peers) only give contracts a zod that
    // this package passes on; optional, because plain-JS and script-tag users never need it.
    const { types } = imported();
    expect(types).toContain('@threadline/contracts');
    for (const dep of types) {
      const peers = (JSON.parse(readFileSync(require.resolve(`${dep}/package.json`), 'utf8')) as Manifest)
        .peerDependencies;
      for (const [peer, range] of Object.entries(peers ?? {})) {
        expect(manifest.peerDependencies?.[peer], `${dep} needs ${peer}`).toBe(range);
        expect(manifest.peerDependenciesMeta?.[peer]?.optional).toBe(true);
      }
    }
  });
});

describe('registration', () => {
  it('only agent-chat.ts defines <agent-chat>, and only the main entry imports it (./element defines nothing)', () => {
    const dir = new URL('src/', root);
    const files = readdirSync(dir).map((file) => [file, readFileSync(new URL(file, dir), 'utf8')] as const);
    // Code lines only: element.ts shows a define in its JSDoc example.
    expect(
      files
        .filter(([, text]) => /^(?!\s*(\*|\/\/)).*customElements\.define\(/m.test(text))
        .map(([file]) => file),
    ).toEqual(['agent-chat.ts']);
    expect(files.filter(([, text]) => text.includes("from './agent-chat.js'")).map(([file]) => file)).toEqual(
      ['index.ts'],
    );
  });
});

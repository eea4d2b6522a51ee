import { createHash } from 'node:crypto';
import type { ToolManifest, ToolManifestEntry } from '@threadline/contracts';

/** Distinct tool sets whose manifest body and ETag a router keeps ready (a token's `tools` claim picks one). */
export const MAX_MANIFEST_VARIANTS = 256;

/** A manifest as the router answers it: the JSON body and its strong ETag (a hash of exactly that body). */
export interface ManifestVariant {
  body: string;
  etag: string;
}

/**
 * The manifest for each tool set a token may open, built once and kept (at most {@link MAX_MANIFEST_VARIANTS},
 * oldest dropped). Because the ETag hashes the body, two tokens share a tag only when they would get the same
 * manifest: a 304 never hands one token's tool list to another.
 */
export class ManifestVariants {
  readonly #entries: readonly ToolManifestEntry[];
  readonly #variants = new Map<string, ManifestVariant>();

  constructor(entries: readonly ToolManifestEntry[]) {
    this.#entries = entries;
  }

  /** The manifest of the tools in `allowed` (registered ones only, in registration order). */
  for(allowed: readonly string[]): ManifestVariant {
    const set = new Set(allowed);
    const key = [...set].sort().join('\n');
    const known = this.#variants.get(key);
    if (known) return known;
    const manifest: ToolManifest = { tools: this.#entries.filter((e) => set.has(e.name)) };
    const body = JSON.stringify({ ok: true, data: manifest });
    const variant = { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
    if (this.#variants.size >= MAX_MANIFEST_VARIANTS) {
      const oldest = this.#variants.keys().next().value;
      if (oldest !== undefined) this.#variants.delete(oldest);
    }
    this.#variants.set(key, variant);
    return variant;
  }
}

/** True when an `If-None-Match` header names `etag` (or is `*`); weak tags compare by value (RFC 9110 §13.1.2). */
export function ifNoneMatchHits(header: string | null, etag: string): boolean {
  if (header === null) return false;
  return header.split(',').some((raw) => {
    const tag = raw.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}

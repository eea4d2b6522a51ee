import { createHash } from 'node:crypto';
import type { ToolManifest } from '@threadline/contracts';
import { ToolsKitError } from './errors.js';

/** Default of {@link ManifestCacheOptions.maxEntries}. */
export const DEFAULT_MANIFEST_CACHE_ENTRIES = 100;

/** Options of {@link ManifestCache}. */
export interface ManifestCacheOptions {
  /** Most manifests kept (1..10000, default 100); the least recently used is dropped first. */
  maxEntries?: number;
}

/** A manifest kept by a client together with the ETag the router gave it. */
export interface CachedManifest {
  etag: string;
  manifest: ToolManifest;
}

/**
 * Tool manifests kept across runs by the agent side, one per scope (router URL plus the token's issuer, audience
 * and tool list), least recently used dropped first. A client revalidates its entry with `If-None-Match`, so a
 * changed tool set or tool definition is fetched again, and the router answers 304 only when this exact
 * manifest is what the token would get.
 *
 * @example
 * const manifests = new ManifestCache({ maxEntries: 50 });
 * const client = createToolClient({ baseUrl, token, threadId, manifestCache: manifests });
 */
export class ManifestCache {
  readonly maxEntries: number;
  readonly #entries = new Map<string, CachedManifest>();

  constructor(options: ManifestCacheOptions = {}) {
    const max = options.maxEntries ?? DEFAULT_MANIFEST_CACHE_ENTRIES;
    if (!Number.isSafeInteger(max) || max < 1 || max > 10_000)
      throw new ToolsKitError('invalid_options', 'maxEntries must be an integer from 1 to 10000');
    this.maxEntries = max;
  }

  /** Entries held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry of `scope`, marked as just used. */
  get(scope: string): CachedManifest | undefined {
    const entry = this.#entries.get(scope);
    if (entry) {
      this.#entries.delete(scope);
      this.#entries.set(scope, entry);
    }
    return entry;
  }

  /** Keeps `entry` for `scope`, dropping the least recently used entry when full. */
  set(scope: string, entry: CachedManifest): void {
    this.#entries.delete(scope);
    if (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(scope, entry);
  }

  /** Forgets `scope` (e.g. after its manifest failed to parse). */
  delete(scope: string): void {
    this.#entries.delete(scope);
  }
}

/**
 * The cache scope of a token at a router: the router URL and the token's `iss`, `aud` and sorted `tools` claims,
 * read without verifying (the router verifies; the scope only picks which entry to revalidate). A token whose
 * claims cannot be read gets a scope of its own.
 */
export function manifestScope(baseUrl: string, token: string): string {
  const payload = token.split('.')[1];
  if (payload !== undefined) {
    try {
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<
        string,
        unknown
      >;
      if (Array.isArray(claims.tools) && claims.tools.every((t) => typeof t === 'string')) {
        const tools = [...(claims.tools as string[])].sort();
        return JSON.stringify([baseUrl, claims.iss ?? null, claims.aud ?? null, tools]);
      }
    } catch {
      // fall through: not a readable JWT
    }
  }
  return JSON.stringify([baseUrl, 'token', createHash('sha256').update(token).digest('base64url')]);
}

import { ToolManifestSchema, ToolResultSchema, safeParse } from '@threadline/contracts';
import type { JsonValue, ToolErrorCode, ToolManifest, ToolResult } from '@threadline/contracts';
import { ToolsKitError } from './errors.js';
import { manifestScope, type CachedManifest, type ManifestCache } from './manifest-cache.js';
import { TOOL_ROUTES, needsApprovalPath, toolCallPath } from './routes.js';

/** Per-call options of {@link ToolClient.call}. */
export interface ToolCallOptions {
  /** Aborting answers `{ ok: false, error: { code: 'aborted' } }`. */
  signal?: AbortSignal;
  /** Sent as `Idempotency-Key`; a replay returns the first result without writing twice (the SDK's call id is a good one). */
  idempotencyKey?: string;
  /** Overrides the client's timeout for this call. */
  timeoutMs?: number;
}

/** The agent side of the tool endpoints. No method ever rejects: every failure is a result envelope. */
export interface ToolClient {
  /** Calls `POST /tools/:name` with `{ threadId, input }`. Network error → `unavailable`, timeout → `timeout`, abort → `aborted`. */
  call<T = unknown>(name: string, input: unknown, options?: ToolCallOptions): Promise<ToolResult<T>>;
  /** Reads `GET /tools`: the tools this token may call. */
  manifest(options?: { signal?: AbortSignal }): Promise<ToolResult<ToolManifest>>;
  /** Reads `GET /state?threadId=`. */
  state(options?: { signal?: AbortSignal }): Promise<ToolResult<Record<string, JsonValue>>>;
  /** Asks `POST /needs-approval/:name` whether this call of a tool with a `needsApproval` check must wait. */
  needsApproval(
    name: string,
    input: unknown,
    options?: { signal?: AbortSignal },
  ): Promise<ToolResult<{ needsApproval: boolean }>>;
  /** Reads the token's run's saved state (`GET /run-state`): `null` when none is saved. */
  getRunState(options?: { signal?: AbortSignal }): Promise<ToolResult<{ state: string | null }>>;
  /** Saves the token's run's state (`PUT /run-state`), replacing any saved before. */
  putRunState(state: string, options?: { signal?: AbortSignal }): Promise<ToolResult<unknown>>;
  /** Forgets the token's run's saved state (`DELETE /run-state`). */
  deleteRunState(options?: { signal?: AbortSignal }): Promise<ToolResult<unknown>>;
}

/** Options of {@link createToolClient}. */
export interface ToolClientOptions {
  /** Where the router is mounted, e.g. `http://127.0.0.1:3000/api`. */
  baseUrl: string;
  /** The act-as token from the run request. */
  token: string;
  /** The thread the token was minted for. */
  threadId: string;
  /** Injected fetch (tests, proxies). Default global fetch. */
  fetch?: typeof fetch;
  /** Per-request timeout. Default 30,000 ms. */
  timeoutMs?: number;
  /** Largest response body read. Default 4 MiB. */
  maxResponseBytes?: number;
  /**
   * Keeps the manifest across clients (runs): `manifest()` then revalidates with `If-None-Match` and a 304 reuses
   * the kept copy. Share one cache between the clients of one agent service.
   */
  manifestCache?: ManifestCache;
}

const TIMEOUT = Symbol('timeout');
/** What `request` answers to a conditional GET the router answered with 304. */
const NOT_MODIFIED = Symbol('not modified');
const ABORTED = Symbol('aborted');

/**
 * Creates the agent-side client of a tool router.
 * @example
 * const client = createToolClient({ baseUrl: run.tools.baseUrl, token: run.tools.token, threadId: run.threadId });
 * const result = await client.call('profile.patch', { displayName: 'Ada' });
 * if (!result.ok) console.warn(result.error.code, result.error.message);
 */
export function createToolClient(options: ToolClientOptions): ToolClient {
  if (typeof options !== 'object' || options === null)
    throw new ToolsKitError('invalid_options', 'createToolClient needs options');
  let base: URL;
  try {
    base = new URL(options.baseUrl);
  } catch (cause) {
    throw new ToolsKitError('invalid_options', `baseUrl ${JSON.stringify(options.baseUrl)} is not a URL`, {
      cause,
    });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new ToolsKitError('invalid_options', 'baseUrl must be http or https');
  if (typeof options.token !== 'string' || options.token === '')
    throw new ToolsKitError('invalid_options', 'token is required');
  if (typeof options.threadId !== 'string' || options.threadId === '')
    throw new ToolsKitError('invalid_options', 'threadId is required');
  const baseUrl = base.href.replace(/\/+$/, '');
  const doFetch = options.fetch ?? globalThis.fetch;
  const defaultTimeout = positive(options.timeoutMs, 30_000, 'timeoutMs');
  const maxResponseBytes = positive(options.maxResponseBytes, 4 * 1024 * 1024, 'maxResponseBytes');
  const cache = options.manifestCache;
  const threadQuery = `?threadId=${encodeURIComponent(options.threadId)}`;

  async function request(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body: unknown,
    opts: {
      signal?: AbortSignal | undefined;
      timeoutMs?: number | undefined;
      idempotencyKey?: string | undefined;
      maxResponseBytes?: number;
      /** Sent as If-None-Match; the answer's ETag is written back here. */
      validator?: { etag?: string | undefined } | undefined;
    },
  ): Promise<ToolResult | typeof NOT_MODIFIED> {
    const responseLimit = opts.maxResponseBytes ?? maxResponseBytes;
    if (opts.signal?.aborted) return failure('aborted', 'the call was aborted before it started');
    let timeoutMs = defaultTimeout;
    if (opts.timeoutMs !== undefined) {
      if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0)
        return failure('invalid_input', 'timeoutMs must be a positive number');
      timeoutMs = opts.timeoutMs;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(TIMEOUT), timeoutMs);
    const onAbort = () => controller.abort(ABORTED);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const headers: Record<string, string> = {
        authorization: `Bearer ${options.token}`,
        accept: 'application/json',
      };
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (opts.idempotencyKey !== undefined) headers['idempotency-key'] = opts.idempotencyKey;
      const validator = opts.validator;
      if (validator?.etag !== undefined) headers['if-none-match'] = validator.etag;
      let payload: string | undefined;
      if (body !== undefined) {
        try {
          payload = JSON.stringify(body);
        } catch {
          return failure('invalid_input', 'the input cannot be serialised as JSON');
        }
      }
      const response = await doFetch(`${baseUrl}${path}`, {
        method,
        headers,
        ...(payload !== undefined ? { body: payload } : {}),
        signal: controller.signal,
        // Never follow a redirect: it would carry the act-as token somewhere the host did not choose.
        redirect: 'error',
      });
      if (validator) {
        if (response.status === 304 && validator.etag !== undefined) {
          await response.body?.cancel().catch(() => {});
          return NOT_MODIFIED;
        }
        validator.etag = response.headers.get('etag') ?? undefined;
      }
      const text = await readLimited(response, responseLimit);
      if (text === null)
        return failure('unavailable', `the tool endpoint answered more than ${responseLimit} bytes`);
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return failure(
          'unavailable',
          `the tool endpoint answered HTTP ${response.status} without a JSON result`,
        );
      }
      const parsed = safeParse(ToolResultSchema, value, 'tool result');
      if (!parsed.ok)
        return failure(
          'unavailable',
          `the tool endpoint answered HTTP ${response.status} with a malformed result`,
        );
      return parsed.value as ToolResult;
    } catch (error) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
      if (reason === TIMEOUT) return failure('timeout', `no answer within ${timeoutMs} ms`);
      if (reason === ABORTED) return failure('aborted', 'the call was aborted');
      return failure('unavailable', `the tool endpoint could not be reached: ${describe(error)}`);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  return {
    async call<T>(name: string, input: unknown, callOptions: ToolCallOptions = {}) {
      if (typeof name !== 'string' || name === '')
        return failure('invalid_input', 'a tool name is required') as ToolResult<T>;
      const body: Record<string, unknown> = { threadId: options.threadId, input: input ?? {} };
      return (await request('POST', toolCallPath(name), body, callOptions)) as ToolResult<T>;
    },
    async manifest(opts = {}) {
      const scope = cache ? manifestScope(baseUrl, options.token) : undefined;
      const kept = scope !== undefined ? cache?.get(scope) : undefined;
      const validator = cache ? { etag: kept?.etag } : undefined;
      const result = await request('GET', `${TOOL_ROUTES.manifest}${threadQuery}`, undefined, {
        ...opts,
        validator,
      });
      if (result === NOT_MODIFIED) return { ok: true, data: (kept as CachedManifest).manifest };
      if (!result.ok) return result;
      const manifest = safeParse(ToolManifestSchema, result.data, 'tool manifest');
      if (!manifest.ok) {
        if (scope !== undefined) cache?.delete(scope);
        return failure('unavailable', manifest.error.message) as ToolResult<ToolManifest>;
      }
      if (scope !== undefined && validator?.etag !== undefined)
        cache?.set(scope, { etag: validator.etag, manifest: manifest.value });
      return { ok: true, data: manifest.value };
    },
    async state(opts = {}) {
      const result = (await request(
        'GET',
        `${TOOL_ROUTES.state}${threadQuery}`,
        undefined,
        opts,
      )) as ToolResult;
      if (!result.ok) return result;
      if (typeof result.data !== 'object' || result.data === null || Array.isArray(result.data)) {
        return failure('unavailable', 'the state endpoint answered a non-object') as ToolResult<
          Record<string, JsonValue>
        >;
      }
      return result as ToolResult<Record<string, JsonValue>>;
    },
    async needsApproval(name, input, opts = {}) {
      const result = (await request(
        'POST',
        needsApprovalPath(name),
        { threadId: options.threadId, input: input ?? {} },
        opts,
      )) as ToolResult;
      if (!result.ok) return result;
      const data = result.data as { needsApproval?: unknown } | null;
      if (typeof data?.needsApproval !== 'boolean')
        return failure('unavailable', 'the approval check answered no needsApproval boolean');
      return { ok: true, data: { needsApproval: data.needsApproval } };
    },
    async getRunState(opts = {}) {
      const result = (await request('GET', `${TOOL_ROUTES.runState}${threadQuery}`, undefined, {
        ...opts,
        maxResponseBytes: Math.max(maxResponseBytes, RUN_STATE_RESPONSE_BYTES),
      })) as ToolResult;
      if (!result.ok) return result;
      const data = result.data as { state?: unknown } | null;
      if (data === null || (typeof data.state !== 'string' && data.state !== null))
        return failure('unavailable', 'the run-state endpoint answered no state');
      return { ok: true, data: { state: data.state } };
    },
    putRunState(state, opts = {}) {
      return request(
        'PUT',
        TOOL_ROUTES.runState,
        { threadId: options.threadId, state },
        opts,
      ) as Promise<ToolResult>;
    },
    deleteRunState(opts = {}) {
      return request(
        'DELETE',
        `${TOOL_ROUTES.runState}${threadQuery}`,
        undefined,
        opts,
      ) as Promise<ToolResult>;
    },
  };
}

/** Largest run state the client reads back (the router's `maxRunStateBytes` bound, 16 MiB at most, plus JSON). */
const RUN_STATE_RESPONSE_BYTES = 17 * 1024 * 1024;

function failure(code: ToolErrorCode, message: string): ToolResult<never> {
  return { ok: false, error: { code, message: message.slice(0, 4096) } };
}

async function readLimited(response: Response, limit: number): Promise<string | null> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    const detail = cause instanceof Error ? ` (${cause.message})` : '';
    return `${error.message}${detail}`.slice(0, 500);
  }
  return 'unknown error';
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0)
    throw new ToolsKitError('invalid_options', `${name} must be a positive number`);
  return value;
}

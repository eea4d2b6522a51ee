import { MAX_HISTORY_ITEMS } from './agent-memory.js';
import { AgentRunnerError } from './errors.js';

// How this package's factories check their options: one code (`invalid_options`), a message that names the
// factory and the option. Checked up front, so a typo fails at start, not at the first run.

function fail(factory: string, message: string): never {
  throw new AgentRunnerError('invalid_options', `${factory}: ${message}`);
}

function checkInt(factory: string, name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER) {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    fail(factory, `${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
}

function checkKind(factory: string, name: string, value: unknown, kind: 'function' | 'object' | 'string') {
  if (value === undefined) return;
  if (typeof value !== kind || value === null)
    fail(factory, `${name} must be ${kind === 'object' ? 'an' : 'a'} ${kind}`);
}

/** Longest `tuning.approvalTtlMs`: 7 days, the relay's own bound for a pending approval. */
const MAX_APPROVAL_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/** Checks the tuning keys of `source`, named `${prefix}${key}` in messages. */
function checkTuning(f: string, prefix: string, source: Record<string, unknown>) {
  checkInt(f, `${prefix}maxTurns`, source.maxTurns, 1, 1000);
  checkInt(f, `${prefix}toolTimeoutMs`, source.toolTimeoutMs, 1, 3_600_000);
  checkInt(f, `${prefix}historyItems`, source.historyItems, 1, MAX_HISTORY_ITEMS);
  checkInt(f, `${prefix}approvalTtlMs`, source.approvalTtlMs, 1, MAX_APPROVAL_TTL_MS);
  const cache = source.manifestCache;
  if (cache !== undefined && cache !== false && (typeof cache !== 'object' || cache === null))
    fail(f, `${prefix}manifestCache must be a ManifestCache or false`);
}

/** Checks `createRunner`'s options (see AgentRunnerOptions), the deprecated top-level tuning keys included. */
export function checkRunnerOptions(options: unknown): void {
  const f = 'createRunner';
  if (typeof options !== 'object' || options === null) fail(f, 'options must be an object');
  const o = options as Record<string, unknown>;
  if (o.agent !== undefined && o.agentFactory !== undefined) fail(f, 'give agent or agentFactory, not both');
  checkKind(f, 'agent', o.agent, 'object');
  checkKind(f, 'agentFactory', o.agentFactory, 'function');
  if (
    o.model !== undefined &&
    typeof o.model !== 'string' &&
    (typeof o.model !== 'object' || o.model === null)
  )
    fail(f, 'model must be a model name or a Model');
  checkKind(f, 'modelProvider', o.modelProvider, 'object');
  checkKind(f, 'openai', o.openai, 'object');
  const api = (o.openai as { api?: unknown } | undefined)?.api;
  if (api !== undefined && api !== 'responses' && api !== 'chat_completions')
    fail(f, "openai.api must be 'responses' or 'chat_completions'");
  checkInt(f, 'openai.maxRetries', (o.openai as { maxRetries?: unknown } | undefined)?.maxRetries, 0, 10);
  if (o.tracing !== undefined && o.tracing !== false) checkKind(f, 'tracing', o.tracing, 'object');
  if (o.localTools !== undefined && !Array.isArray(o.localTools))
    fail(f, 'localTools must be an array of tools');
  checkKind(f, 'tuning', o.tuning, 'object');
  checkTuning(f, '', o);
  if (o.tuning !== undefined) checkTuning(f, 'tuning.', o.tuning as Record<string, unknown>);
  checkKind(f, 'fetch', o.fetch, 'function');
  checkKind(f, 'env', o.env, 'object');
  checkKind(f, 'logger', o.logger, 'object');
}

/** Checks `createAgentServer`'s (and serveAgent's) options (see AgentServerOptions). */
export function checkServerOptions(options: unknown, factory = 'createAgentServer'): void {
  if (typeof options !== 'object' || options === null) fail(factory, 'options must be an object');
  const o = options as Record<string, unknown>;
  if (typeof o.auth !== 'object' || o.auth === null) fail(factory, 'auth is required');
  checkInt(factory, 'maxConcurrentRuns', o.maxConcurrentRuns, 1);
  checkInt(factory, 'retryAfterSeconds', o.retryAfterSeconds, 1, 86_400);
  checkInt(factory, 'heartbeatMs', o.heartbeatMs, 1);
  checkInt(factory, 'maxBodyBytes', o.maxBodyBytes, 1);
  checkInt(factory, 'bodyTimeoutMs', o.bodyTimeoutMs, 1);
  checkInt(factory, 'writeStallTimeoutMs', o.writeStallTimeoutMs, 1);
  checkInt(factory, 'maxWriteBatchBytes', o.maxWriteBatchBytes, 1);
  checkKind(factory, 'logger', o.logger, 'object');
}

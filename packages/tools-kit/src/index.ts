/**
 * @threadline/tools-kit: safe HTTP tool endpoints for Threadline agents — strict validation, scoped
 * act-as tokens, structured results, built-in state/session/profile/events tools and an agent-side client.
 */
export { ToolsKitError, ToolFailure, ToolCallError, TOOLS_KIT_ERROR_CODES } from './errors.js';
export type { ToolsKitErrorCode } from './errors.js';
export { defineTool } from './tool.js';
export type {
  ApprovalCheckContext,
  NeedsApproval,
  ToolContext,
  ToolDefinition,
  ToolDefinitionInput,
} from './tool.js';
export type { ToolStore, EventSink } from './store.js';
export { MemoryToolStore } from './memory-store.js';
export type { MemoryToolStoreOptions } from './memory-store.js';
export { createTokenIssuer, MAX_TOKEN_TTL_SECONDS, MIN_SECRET_BYTES } from './tokens.js';
export type {
  TokenIssuer,
  TokenIssuerOptions,
  TokenTimingOptions,
  SecretTokenIssuerOptions,
  KeyPairTokenIssuerOptions,
} from './tokens.js';
export {
  BUILTIN_TOOLS,
  DefaultProfileSchema,
  DEFAULT_APPENDABLE_EVENT_TYPES,
  MAX_SESSION_ITEMS_PER_CALL,
} from './builtins.js';
export type { BuiltinToolName } from './builtins.js';
export { createToolRouter } from './router.js';
export type { ToolRouter, ToolRouterOptions } from './router.js';
export type { ToolApprovalCall, ToolApprovals } from './approvals.js';
export { createToolClient } from './client.js';
export type { ToolClient, ToolClientOptions, ToolCallOptions } from './client.js';
export { ManifestCache, DEFAULT_MANIFEST_CACHE_ENTRIES } from './manifest-cache.js';
export type { ManifestCacheOptions, CachedManifest } from './manifest-cache.js';

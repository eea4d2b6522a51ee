import type { ActAsClaims } from '@threadline/contracts';
import type { ApprovalRules } from './approvals.js';
import type { Execute } from './execute.js';
import type { IdempotentCalls } from './idempotency.js';
import type { ManifestVariants } from './manifest-etag.js';
import type { Reject } from './responses.js';
import type { ToolStore } from './store.js';
import type { ToolDefinition } from './tool.js';

/** What the router's endpoints share: its tools, storage, bounds and steps, built once by `createToolRouter`. */
export interface RouterContext {
  /** Every tool served, built-ins included, by name. */
  readonly registry: ReadonlyMap<string, ToolDefinition>;
  readonly store: ToolStore;
  readonly maxBodyBytes: number;
  readonly bodyTimeoutMs: number;
  readonly maxRunStateBytes: number;
  readonly manifestVariants: ManifestVariants;
  readonly authenticate: (request: Request) => Promise<ActAsClaims | Reject>;
  readonly execute: Execute;
  readonly approvals: ApprovalRules;
  readonly idempotent: IdempotentCalls;
}

import type { z } from 'zod';
import { isBrandedInstance } from './brand.js';

/** One problem found while parsing: where (`path`, dotted) and what. */
export interface ContractIssue {
  path: string;
  message: string;
}

/** Codes of {@link ContractError}. */
export const CONTRACT_ERROR_CODES = ['invalid_payload', 'invalid_json'] as const;
/** A {@link ContractError} code. */
export type ContractErrorCode = (typeof CONTRACT_ERROR_CODES)[number];

// `instanceof` across copies of this package (ESM and CommonJS builds, two installed versions): see isBrandedInstance.
const BRAND = Symbol.for('@threadline/contracts/ContractError');

/**
 * The one error this package throws: a value did not match a contract. `issues` lists each problem with
 * its path; messages are ours, never zod internals, so they are safe to send over the wire.
 */
export class ContractError extends Error {
  static {
    Object.defineProperty(this.prototype, BRAND, { value: true });
  }

  readonly code: ContractErrorCode;
  readonly issues: ContractIssue[];
  constructor(
    code: ContractErrorCode,
    message: string,
    issues: ContractIssue[],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.issues = issues;
  }

  /** True for errors of this class from any copy of this package (ESM or CommonJS build), not only this one. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isBrandedInstance(this, value, BRAND);
  }
}

/** Turns a path array into `a.b[0].c`; the root is `""`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** Normalises zod issues into {@link ContractIssue}s, capped so a huge bad payload gives a small answer. */
export function toContractIssues(error: z.ZodError, max = 20): ContractIssue[] {
  const issues: ContractIssue[] = [];
  for (const issue of error.issues) {
    if (issues.length >= max) break;
    issues.push({ path: formatPath(issue.path), message: describeIssue(issue) });
  }
  return issues;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected}`;
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length > 1 ? 's' : ''}: ${issue.keys.slice(0, 5).join(', ')}`;
    case 'invalid_union':
      return 'does not match any allowed shape';
    case 'invalid_value':
      return `must be one of ${issue.values
        .slice(0, 10)
        .map((v) => JSON.stringify(v))
        .join(', ')}`;
    default:
      return issue.message;
  }
}

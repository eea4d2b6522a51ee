import type { ActAsClaims } from '@threadline/contracts';
import { Reject } from './responses.js';
import type { ToolDefinition } from './tool.js';

/** A call of a tool that needs approval, as {@link ToolApprovals.isApproved} sees it. */
export interface ToolApprovalCall {
  /** From the act-as token. */
  userId: string;
  threadId: string;
  runId: string;
  /** The call's idempotency key: the tool call id the decision names. */
  toolCallId: string;
  toolName: string;
  /** The call's input as validated by the tool's schema. */
  input: unknown;
  /**
   * The call's input as the caller sent it, before the tool's schema applied defaults or transforms: what to
   * compare with the arguments the person was shown (TOOL_APPROVAL_REQUESTED `args`), so that an approval
   * covers those arguments and no others.
   */
  args: unknown;
}

/** The host's record of approval decisions (see `ToolRouterOptions.approvals`). */
export interface ToolApprovals {
  /**
   * True only when the thread's owner approved exactly this call: same thread, run and tool call id, and the
   * same arguments as they were shown ({@link ToolApprovalCall.args}).
   */
  isApproved(call: ToolApprovalCall): boolean | Promise<boolean>;
}

/** The router's approval rules for one set of options. */
export interface ApprovalRules {
  /** Whether this call of `tool` must wait for a person. A check that throws answers true (fail closed). */
  needsApprovalFor(tool: ToolDefinition, input: unknown, auth: ActAsClaims): Promise<boolean>;
  /**
   * Refuses a call that needs approval unless the host holds an approved decision for exactly this call (the
   * token's thread and run, the idempotency key as tool call id, the arguments as sent). Null when the call may
   * run.
   */
  checkApproved(
    tool: ToolDefinition,
    call: { input: unknown; args: unknown },
    auth: ActAsClaims,
    toolCallId: string | undefined,
  ): Promise<Reject | null>;
}

/** Creates the approval rules over the host's decisions (none: every call that needs approval is refused). */
export function createApprovalRules(
  approvals: ToolApprovals | undefined,
  logger: Pick<Console, 'warn'>,
): ApprovalRules {
  async function needsApprovalFor(tool: ToolDefinition, input: unknown, auth: ActAsClaims): Promise<boolean> {
    const rule = tool.needsApproval;
    if (typeof rule !== 'function') return rule === true;
    try {
      return (await rule(input, { userId: auth.sub, threadId: auth.thread, runId: auth.run })) !== false;
    } catch (error) {
      logger.warn(`[tools-kit] the needsApproval check of ${tool.name} failed; asking for approval`, error);
      return true;
    }
  }

  async function checkApproved(
    tool: ToolDefinition,
    { input, args }: { input: unknown; args: unknown },
    auth: ActAsClaims,
    toolCallId: string | undefined,
  ): Promise<Reject | null> {
    if (!(await needsApprovalFor(tool, input, auth))) return null;
    const required = `${tool.name} needs a person’s approval`;
    if (!approvals) return new Reject('approval_required', `${required}; this host records no decisions`);
    if (toolCallId === undefined)
      return new Reject(
        'approval_required',
        `${required}: send the approved tool call id as the Idempotency-Key`,
      );
    let approved: boolean;
    try {
      approved =
        (await approvals.isApproved({
          userId: auth.sub,
          threadId: auth.thread,
          runId: auth.run,
          toolCallId,
          toolName: tool.name,
          input,
          args,
        })) === true;
    } catch (error) {
      logger.warn('[tools-kit] approvals.isApproved failed; refusing the call', error);
      return new Reject('unavailable', 'could not check the approval of this call; try again');
    }
    return approved
      ? null
      : new Reject('approval_required', `${required}: no approved decision for this call of this run`);
  }

  return { needsApprovalFor, checkApproved };
}

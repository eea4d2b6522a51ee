// The tool router's approvals check (createToolRouter's `approvals`), answered from the thread's log: a call of
// a tool that needs approval runs only when the log holds the owner's approved TOOL_APPROVAL_RESOLVED for the
// same run and tool call id, after a TOOL_APPROVAL_REQUESTED of that call for the same tool whose arguments are
// the call's (as JSON values: key order and spacing aside). The relay writes the decision (owner only, once)
// before it resumes the run, so the agent's call finds it.
import { isDeepStrictEqual } from 'node:util';
import type { AgentEvent } from '@threadline/contracts';
import type { EventStore } from '@threadline/relay';
import type { ToolApprovalCall, ToolApprovals } from '@threadline/tools-kit';

/**
 * Events of the log's tail read per check. The decision is written just before the run resumes and the tool
 * runs right after it, so it is among the thread's last events (one run per thread at a time); a retry of the
 * call after more than this many later events is refused, and a retry does not need it (its result replays).
 */
export const APPROVAL_SCAN_EVENTS = 256;

/** The approvals check over `store`, reading at most `scan` events of the thread's log per call. */
export function approvalsFromLog(
  store: Pick<EventStore, 'lastSeq' | 'read'>,
  scan: number = APPROVAL_SCAN_EVENTS,
): ToolApprovals {
  return {
    async isApproved(call: ToolApprovalCall): Promise<boolean> {
      const last = await store.lastSeq(call.threadId);
      const tail = await store.read(call.threadId, { afterSeq: Math.max(0, last - scan), limit: scan });
      const runMarker = `"runId":${JSON.stringify(call.runId)}`;
      const callMarker = `"toolCallId":${JSON.stringify(call.toolCallId)}`;
      let requested = false;
      let approved = false;
      for (const stored of tail) {
        // Cheap filter first; the parsed event decides.
        if (!stored.json.includes(runMarker) || !stored.json.includes(callMarker)) continue;
        const event = JSON.parse(stored.json) as AgentEvent;
        if (event.runId !== call.runId || !('toolCallId' in event) || event.toolCallId !== call.toolCallId)
          continue;
        if (event.type === 'TOOL_APPROVAL_REQUESTED')
          requested = event.toolName === call.toolName && sameArguments(event.args, call.args);
        else if (event.type === 'TOOL_APPROVAL_RESOLVED') approved = requested && event.approved;
      }
      return approved;
    },
  };
}

/** Whether the arguments shown to the person (JSON text) are the call's, as JSON values. */
function sameArguments(shown: string, args: unknown): boolean {
  try {
    return isDeepStrictEqual(JSON.parse(shown), args);
  } catch {
    return false; // not JSON: nothing was shown that a call could match
  }
}

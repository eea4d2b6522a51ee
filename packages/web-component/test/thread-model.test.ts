import type { SequencedAgentEvent } from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import { ThreadModel, type AssistantItem } from '../src/thread-model.js';

let seq = 0;
const ev = (e: Record<string, unknown>): SequencedAgentEvent =>
  ({ threadId: 't1', runId: 'r1', ts: 1, seq: ++seq, ...e }) as unknown as SequencedAgentEvent;
const chunk = (messageId: string, delta: string, runId = 'r1'): SequencedAgentEvent =>
  ev({ type: 'TEXT_MESSAGE_CHUNK', messageId, delta, runId });

describe('ThreadModel', () => {
  it('reassembles messages, tracks tools and the active run, and completes messages at the run end', () => {
    const m = new ThreadModel();
    m.apply(ev({ type: 'RUN_STARTED' }));
    expect(m.activeRunId).toBe('r1');
    m.apply(chunk('a1', 'Hel'));
    m.apply(chunk('a1', 'lo'));
    const tool = m.apply(ev({ type: 'TOOL_CALL_STARTED', toolCallId: 'c1', toolName: 'x.y' }));
    expect(tool.completed.map((i) => i.messageId)).toEqual(['a1']); // text before a tool call is complete
    m.apply(ev({ type: 'TOOL_CALL_RESULT', toolCallId: 'c1', toolName: 'x.y', ok: false, error: 'denied' }));
    m.apply(chunk('a2', 'Sorry'));
    m.apply(ev({ type: 'TOOL_CALL_STARTED', toolCallId: 'c2', toolName: 'x.z' }));
    const end = m.apply(ev({ type: 'RUN_ERROR', message: 'boom' }));
    expect(end.completed).toEqual([]);
    expect(m.activeRunId).toBeUndefined();
    expect(
      m.items.map((i) => [
        i.kind,
        'text' in i ? i.text : 'status' in i ? i.status : 'message' in i ? i.message : i.kind,
      ]),
    ).toEqual([
      ['assistant', 'Hello'],
      ['tool', 'failed'],
      ['assistant', 'Sorry'],
      ['tool', 'failed'], // still running when the run died
      ['run-error', 'boom'],
    ]);
  });

  it("a regenerated run takes the old answer's place under the same user message, live and in replay", () => {
    const m = new ThreadModel();
    m.apply(ev({ type: 'USER_MESSAGE', messageId: 'u1', clientMessageId: 'c1', userId: 'x', text: 'Hi' }));
    m.apply(ev({ type: 'RUN_STARTED' }));
    m.apply(ev({ type: 'HISTORY_WINDOWED', windowItems: 3 }));
    m.apply(chunk('a1', 'Old'));
    m.apply(ev({ type: 'TOOL_CALL_STARTED', toolCallId: 'c1', toolName: 'x.y' }));
    m.apply(ev({ type: 'RUN_ERROR', message: 'boom' }));
    const started = m.apply(ev({ type: 'RUN_STARTED', runId: 'r2', regenerates: 'r1' }));
    expect(started.changed).toBe(true);
    expect(m.activeRunId).toBe('r2');
    // Only the user's message is left, now answered by r2 (so Retry on r2 finds it).
    expect(m.items.map((i) => [i.kind, i.runId])).toEqual([['user', 'r2']]);
    expect(m.userMessageOf('r2')?.text).toBe('Hi');
    m.apply(chunk('a2', 'New', 'r2'));
    m.apply(ev({ type: 'RUN_FINISHED', runId: 'r2' }));
    expect(m.items.map((i) => [i.kind, 'text' in i ? i.text : ''])).toEqual([
      ['user', 'Hi'],
      ['assistant', 'New'],
    ]);
    // A RUN_STARTED without `regenerates` leaves earlier rows alone.
    expect(m.apply(ev({ type: 'RUN_STARTED', runId: 'r3' })).changed).toBe(false);
    expect(m.items).toHaveLength(2);
  });

  it('matches a pending message to its ack and USER_MESSAGE without duplicating it', () => {
    const m = new ThreadModel();
    m.addPending('c1', 'hi');
    m.acknowledge('c1', 'r9');
    m.apply(
      ev({
        type: 'USER_MESSAGE',
        runId: 'r9',
        messageId: 'u1',
        clientMessageId: 'c1',
        userId: 'u',
        text: 'hi',
      }),
    );
    expect(m.items).toHaveLength(1);
    expect(m.items[0]).toMatchObject({ status: 'sent', runId: 'r9' });
    expect(m.userMessageOf('r9')?.text).toBe('hi');
    m.addPending('c2', 'again');
    expect(m.unacknowledged().map((i) => i.clientMessageId)).toEqual(['c2']);
    expect(m.fail('c2', 'lost')).toBe(true);
    expect(m.fail('c2', 'lost')).toBe(false);
  });

  it('marks a tool call that waits for approval, then the decision; a run that ends unanswered fails it', () => {
    const m = new ThreadModel();
    m.apply(ev({ type: 'RUN_STARTED', runId: 'r1' }));
    m.apply(ev({ type: 'TOOL_CALL_STARTED', runId: 'r1', toolCallId: 'c1', toolName: 'profile.clear' }));
    m.apply(
      ev({
        type: 'TOOL_APPROVAL_REQUESTED',
        runId: 'r1',
        toolCallId: 'c1',
        toolName: 'profile.clear',
        args: '{}',
      }),
    );
    expect(m.items[0]).toMatchObject({ kind: 'tool', status: 'running', approval: 'pending', args: '{}' });
    expect(m.activeRunId).toBe('r1');
    m.apply(ev({ type: 'TOOL_APPROVAL_RESOLVED', runId: 'r1', toolCallId: 'c1', approved: true }));
    expect(m.items[0]).toMatchObject({ approval: 'approved' });
    m.apply(ev({ type: 'RUN_STARTED', runId: 'r2' }));
    m.apply(
      ev({
        type: 'TOOL_APPROVAL_REQUESTED',
        runId: 'r2',
        toolCallId: 'c2',
        toolName: 'profile.clear',
        args: '{}',
      }),
    );
    m.apply(ev({ type: 'RUN_ERROR', runId: 'r2', message: 'expired', code: 'approval_expired' }));
    expect(m.items.find((i) => i.key === 't:c2')).toMatchObject({ status: 'failed', approval: 'pending' });
  });

  it('keeps one history divider, the newest, where its run began', () => {
    const m = new ThreadModel();
    m.apply(ev({ type: 'RUN_STARTED', runId: 'r1' }));
    m.apply(ev({ type: 'HISTORY_WINDOWED', runId: 'r1', windowItems: 200 }));
    m.apply(chunk('a1', 'one', 'r1'));
    m.apply(ev({ type: 'RUN_FINISHED', runId: 'r1' }));
    expect(m.items.map((i) => i.kind)).toEqual(['history-divider', 'assistant']);
    m.apply(ev({ type: 'RUN_STARTED', runId: 'r2' }));
    const moved = m.apply(ev({ type: 'HISTORY_WINDOWED', runId: 'r2', windowItems: 150 }));
    expect(moved.changed).toBe(true);
    m.apply(chunk('a2', 'two', 'r2'));
    expect(m.items.map((i) => i.kind)).toEqual(['assistant', 'history-divider', 'assistant']);
    expect(m.items[1]).toMatchObject({ runId: 'r2', windowItems: 150, compacted: false });
    // A compacted history replaces it the same way and says so.
    m.apply(ev({ type: 'RUN_STARTED', runId: 'r3' }));
    m.apply(ev({ type: 'HISTORY_WINDOWED', runId: 'r3', windowItems: 5, reason: 'compacted' }));
    expect(m.items.filter((i) => i.kind === 'history-divider')).toEqual([
      expect.objectContaining({ runId: 'r3', compacted: true }),
    ]);
  });

  it('bounds the rows it keeps (maxItems)', () => {
    const m = new ThreadModel({ maxItems: 3 });
    for (let i = 0; i < 10; i++) m.apply(chunk(`a${i}`, `m${i}`, `r${i}`));
    expect(m.items.map((i) => (i as AssistantItem).text)).toEqual(['m7', 'm8', 'm9']);
    // A dropped row is forgotten: a late chunk for it starts a new row rather than touching freed state.
    m.apply(chunk('a0', 'late', 'r0'));
    expect(m.items).toHaveLength(3);
  });

  it('bounds one message (maxMessageLength) and marks it truncated', () => {
    const m = new ThreadModel({ maxMessageLength: 10 });
    m.apply(chunk('a1', '12345678'));
    m.apply(chunk('a1', 'abcdef'));
    const r = m.apply(chunk('a1', 'more'));
    const item = m.items[0] as AssistantItem;
    expect(item.text).toBe('12345678ab');
    expect(item.truncated).toBe(true);
    expect(r.changed).toBe(false);
  });
});

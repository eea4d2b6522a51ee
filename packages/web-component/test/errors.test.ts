import { describe, expect, it, vi } from 'vitest';

// The element ships ESM only, but a page can still hold two copies of it (a script-tag bundle and an npm
// import): an AgentChatError from one is an AgentChatError for the other.
describe('AgentChatError', () => {
  it('is recognised across two loaded copies of the module, and nothing else is', async () => {
    const first = await import('../src/errors.js');
    vi.resetModules();
    const second = await import('../src/errors.js');
    expect(second.AgentChatError).not.toBe(first.AgentChatError);
    const error = new first.AgentChatError('run_active', 'busy');
    expect(error instanceof second.AgentChatError).toBe(true);
    expect(error instanceof Error).toBe(true);
    expect(new Error('x') instanceof second.AgentChatError).toBe(false);
    expect(Object.assign(new Error('x'), { code: 'run_active' }) instanceof second.AgentChatError).toBe(
      false,
    );
  });
});

import { describe, expect, it } from 'vitest';
import { TOOL_ROUTES, matchToolRoute, needsApprovalPath, toolCallPath } from '../src/routes.js';

describe('tool routes', () => {
  it('the fixed paths match their own route', () => {
    expect(matchToolRoute(TOOL_ROUTES.manifest)).toEqual({ kind: 'manifest' });
    expect(matchToolRoute(TOOL_ROUTES.state)).toEqual({ kind: 'state' });
    expect(matchToolRoute(TOOL_ROUTES.runState)).toEqual({ kind: 'run-state' });
  });

  it('a tool path round-trips its name, whatever characters it holds', () => {
    for (const name of ['profile.patch', 'a b', 'ü/%', '..'])
      expect(matchToolRoute(toolCallPath(name))).toEqual({
        kind: 'call',
        name: name.includes('/') ? undefined : name,
      });
    expect(matchToolRoute(needsApprovalPath('pay.send'))).toEqual({
      kind: 'needs-approval',
      name: 'pay.send',
    });
  });

  it('names no tool for an empty segment, a further slash or malformed percent-encoding', () => {
    for (const path of [
      '/tools/',
      '/tools/a/b',
      '/tools/%E0%A4%A',
      '/needs-approval/',
      '/needs-approval/%2F',
    ])
      expect(matchToolRoute(path), path).toMatchObject({ name: undefined });
    expect(matchToolRoute('/tools/%E0%A4%A')).toEqual({ kind: 'call', name: undefined });
    expect(matchToolRoute('/needs-approval/a/b')).toEqual({ kind: 'needs-approval', name: undefined });
  });

  it('every other path is no route', () => {
    for (const path of ['/', '', '/tool', '/toolsx', '/state/', '/run-state/x', '/needs-approval', '/TOOLS'])
      expect(matchToolRoute(path), path).toBeNull();
  });
});

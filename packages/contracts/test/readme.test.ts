import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  AGENT_HTTP_ERROR_STATUS,
  AGENT_HTTP_PATHS,
  BROWSER_ERROR_CODES,
  CONTRACT_ERROR_CODES,
  ClientMessageSchema,
  EVENT_TYPES,
  LIMITS,
  TOOL_ERROR_STATUS,
  WIRE_SCHEMAS,
  parseEventLenient,
  safeParseJson,
} from '../src/index.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every event type, limit, error code and shipped JSON Schema', () => {
    for (const type of EVENT_TYPES) expect(readme, type).toContain(`\`${type}\``);
    for (const [name, value] of Object.entries(LIMITS)) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\``));
      expect(row, name).toBeDefined();
      expect(row?.replace(/,/g, ''), name).toContain(`| ${value} `);
    }
    for (const [code, status] of Object.entries(TOOL_ERROR_STATUS)) {
      expect(readme, code).toMatch(new RegExp(`\\| \`${code}\` +\\| ${status} +\\|`));
    }
    for (const code of [...BROWSER_ERROR_CODES, ...CONTRACT_ERROR_CODES])
      expect(readme, code).toContain(`\`${code}\``);
    for (const name of Object.keys(WIRE_SCHEMAS)) expect(readme, name).toContain(`\`${name}\``);
    for (const [code, status] of Object.entries(AGENT_HTTP_ERROR_STATUS))
      expect(readme, code).toMatch(new RegExp(`\`${code}\`[^.]*?${status}`));
    for (const path of Object.values(AGENT_HTTP_PATHS))
      expect(readme, path).toMatch(new RegExp(`\`(GET|POST|DELETE) ${path}\\b`));
  });

  it('tells the truth in its parsing examples', () => {
    const msg = safeParseJson(ClientMessageSchema, '{"type":"send","threadId":"t1","text":"hi"}');
    expect(msg.ok).toBe(false);
    if (!msg.ok) expect(msg.error.issues[0]?.path).toBe('clientMessageId');
    const r = parseEventLenient({ type: 'NEW_THING', threadId: 't1', seq: 9 }, { sequenced: true });
    expect(r).toMatchObject({ kind: 'unknown', type: 'NEW_THING', seq: 9 });
  });
});

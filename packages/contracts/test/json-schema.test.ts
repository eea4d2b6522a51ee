import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WIRE_SCHEMAS, toJsonSchema } from '../src/index.js';

const dir = new URL('../schema/', import.meta.url);
const names = Object.keys(WIRE_SCHEMAS) as (keyof typeof WIRE_SCHEMAS)[];

// Run with UPDATE_SCHEMA=1 (npm run schema -w @threadline/contracts) to regenerate after changing a zod schema.
describe('committed JSON Schema', () => {
  if (process.env.UPDATE_SCHEMA) {
    mkdirSync(dir, { recursive: true });
    for (const name of names)
      writeFileSync(new URL(`${name}.json`, dir), JSON.stringify(toJsonSchema(name), null, 2) + '\n');
  }

  it.each(names)('schema/%s.json matches the zod source', (name) => {
    const committed = JSON.parse(readFileSync(new URL(`${name}.json`, dir), 'utf8'));
    expect(committed).toEqual(toJsonSchema(name));
  });

  it('describes the event union with every event type', () => {
    const schema = toJsonSchema('agent-event') as {
      oneOf?: { properties: { type: { const: string } } }[];
      anyOf?: unknown[];
    };
    const variants = (schema.oneOf ?? schema.anyOf) as { properties: { type: { const: string } } }[];
    expect(variants.map((v) => v.properties.type.const).sort()).toEqual([
      'HISTORY_WINDOWED',
      'RUN_ERROR',
      'RUN_FINISHED',
      'RUN_STARTED',
      'STATE_CHANGED',
      'TEXT_MESSAGE_CHUNK',
      'TOOL_APPROVAL_REQUESTED',
      'TOOL_APPROVAL_RESOLVED',
      'TOOL_CALL_RESULT',
      'TOOL_CALL_STARTED',
      'USER_MESSAGE',
    ]);
  });
});

import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { extract } from '../scripts/extract-openai-schemas.mjs';

const spec = {
  openapi: '3.1.0',
  info: { version: '9' },
  components: {
    schemas: {
      A: {
        type: 'object',
        description: 'dropped',
        'x-oaiMeta': { name: 'dropped' },
        properties: {
          description: { type: 'string', nullable: true, example: 'a property may be called description' },
          b: { $ref: '#/components/schemas/B', nullable: true },
          e: { type: 'string', enum: ['x'], nullable: true },
          at: { type: 'integer', format: 'unixtime' },
        },
        required: ['description', 'b'],
      },
      B: {
        $recursiveAnchor: true,
        type: 'object',
        properties: { children: { type: 'array', items: { $recursiveRef: '#' } } },
      },
      Unused: { type: 'string' },
    },
  },
};

describe('extract-openai-schemas', () => {
  const fixture = extract(spec, { commit: 'c' }, ['A']);

  it('keeps the roots and what they reference, adapted to JSON Schema 2020-12', () => {
    expect(fixture.source).toEqual({ commit: 'c', openapi: '3.1.0', apiVersion: '9', roots: ['A'] });
    expect(fixture.schema.$defs).toEqual({
      A: {
        type: 'object',
        properties: {
          description: { type: ['string', 'null'] },
          b: { anyOf: [{ $ref: '#/$defs/B' }, { type: 'null' }] },
          e: { type: ['string', 'null'], enum: ['x', null] },
          at: { type: 'integer' },
        },
        required: ['description', 'b'],
      },
      B: { type: 'object', properties: { children: { type: 'array', items: { $ref: '#/$defs/B' } } } },
    });
  });

  it('gives a schema ajv compiles in strict mode and that accepts what nullable allowed', () => {
    const ajv = new Ajv2020({ strict: true });
    ajv.addSchema(fixture.schema);
    const validate = ajv.getSchema(`${fixture.schema.$id}#/$defs/A`)!;
    expect(validate({ description: null, b: null, e: null })).toBe(true);
    expect(validate({ description: 'd', b: { children: [{ children: [] }] }, e: 'x', at: 1 })).toBe(true);
    expect(validate({ description: 'd', b: { children: [1] } })).toBe(false);
    expect(validate({ description: 1, b: null })).toBe(false);
    expect(validate({ description: null, b: null, e: 'y' })).toBe(false);
  });

  it('refuses references it cannot rewrite', () => {
    const bad = { components: { schemas: { A: { $ref: 'other.yaml#/X' } } } };
    expect(() => extract(bad, {}, ['A'])).toThrow(/unsupported \$ref/);
    expect(() => extract(spec, {}, ['Missing'])).toThrow(/not in the description/);
  });
});

import { z } from 'zod';
import { ClientMessageSchema, ServerMessageSchema } from './browser.js';
import { AgentEventSchema, SequencedAgentEventSchema } from './events.js';
import { FORBIDDEN_KEYS, JsonValueSchema } from './json.js';
import { LIMITS } from './limits.js';
import { RunRequestSchema } from './run-request.js';
import { SHIPPED_SCHEMA_EXTRAS } from './primitives.js';
import { ActAsClaimsSchema, ToolManifestSchema, ToolResultSchema } from './tools.js';

/** Every wire shape, by the file name its JSON Schema ships under (`@threadline/contracts/schema/<name>.json`). */
export const WIRE_SCHEMAS = {
  'agent-event': AgentEventSchema,
  'sequenced-agent-event': SequencedAgentEventSchema,
  'run-request': RunRequestSchema,
  'client-message': ClientMessageSchema,
  'server-message': ServerMessageSchema,
  'tool-result': ToolResultSchema,
  'act-as-claims': ActAsClaimsSchema,
  'tool-manifest': ToolManifestSchema,
} as const;

const jsonDef = (depth: number): string => `json-value-depth-${depth}`;

/**
 * A free-form JSON value as JSON Schema: one definition per nesting level, so that the depth limit and the
 * forbidden keys (`findNonJson`) are stated exactly. A value at depth `maxJsonDepth` may still be an empty
 * array or object; nothing may sit deeper.
 */
function jsonValueDefs(): Record<string, unknown> {
  const defs: Record<string, unknown> = {};
  const scalars = [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }];
  const propertyNames = { not: { enum: [...FORBIDDEN_KEYS] } };
  for (let depth = 0; depth <= LIMITS.maxJsonDepth; depth++) {
    const inner = { $ref: `#/$defs/${jsonDef(depth + 1)}` };
    defs[jsonDef(depth)] = {
      anyOf:
        depth < LIMITS.maxJsonDepth
          ? [
              ...scalars,
              { type: 'array', items: inner },
              { type: 'object', propertyNames, additionalProperties: inner },
            ]
          : [...scalars, { type: 'array', maxItems: 0 }, { type: 'object', maxProperties: 0 }],
    };
  }
  return defs;
}

/**
 * Generates the JSON Schema (draft 2020-12) of one wire shape from its zod source. The output is the same
 * whichever zod 4 release generates it (zod 4.0 wrote discriminated unions as `anyOf`, later releases as
 * `oneOf`; the variants exclude each other, so `oneOf` is exact).
 */
export function toJsonSchema(name: keyof typeof WIRE_SCHEMAS): Record<string, unknown> {
  let usesJsonValue = false;
  const schema = z.toJSONSchema(WIRE_SCHEMAS[name], {
    target: 'draft-2020-12',
    unrepresentable: 'any',
    io: 'input',
    override: ({ zodSchema, jsonSchema }) => {
      if ((zodSchema as unknown) === JsonValueSchema) {
        usesJsonValue = true;
        jsonSchema.$ref = `#/$defs/${jsonDef(0)}`;
        return;
      }
      const extras = SHIPPED_SCHEMA_EXTRAS.get(zodSchema as unknown as z.ZodType);
      if (extras) Object.assign(jsonSchema, extras);
      const def = (zodSchema as unknown as { _zod: { def: { type: string; discriminator?: string } } })._zod
        .def;
      if (def.type === 'union' && def.discriminator !== undefined && jsonSchema.anyOf) {
        jsonSchema.oneOf = jsonSchema.anyOf;
        delete jsonSchema.anyOf;
      }
    },
  });
  const out: Record<string, unknown> = { $id: `urn:threadline:schema:${name}`, title: name, ...schema };
  if (usesJsonValue) out.$defs = { ...(schema.$defs as object | undefined), ...jsonValueDefs() };
  return out;
}

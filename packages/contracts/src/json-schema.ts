import { z } from 'zod';
import { ClientMessageSchema, ServerMessageSchema } from './browser.js';
import { AgentEventSchema, SequencedAgentEventSchema } from './events.js';
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

/**
 * Generates the JSON Schema (draft 2020-12) of one wire shape from its zod source. The output is the same
 * whichever zod 4 release generates it (zod 4.0 wrote discriminated unions as `anyOf`, later releases as
 * `oneOf`; the variants exclude each other, so `oneOf` is exact).
 */
export function toJsonSchema(name: keyof typeof WIRE_SCHEMAS): Record<string, unknown> {
  const schema = z.toJSONSchema(WIRE_SCHEMAS[name], {
    target: 'draft-2020-12',
    unrepresentable: 'any',
    io: 'input',
    override: ({ zodSchema, jsonSchema }) => {
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
  return { $id: `urn:threadline:schema:${name}`, title: name, ...schema };
}

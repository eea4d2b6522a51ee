import { z } from 'zod';
import { ClientMessageSchema, ServerMessageSchema } from './browser.js';
import { AgentEventSchema, SequencedAgentEventSchema } from './events.js';
import { RunRequestSchema } from './run-request.js';
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

/** Generates the JSON Schema (draft 2020-12) of one wire shape from its zod source. */
export function toJsonSchema(name: keyof typeof WIRE_SCHEMAS): Record<string, unknown> {
  const schema = z.toJSONSchema(WIRE_SCHEMAS[name], {
    target: 'draft-2020-12',
    unrepresentable: 'any',
    io: 'input',
  });
  return { $id: `urn:threadline:schema:${name}`, title: name, ...schema };
}

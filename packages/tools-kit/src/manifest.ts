import type { ToolManifestEntry } from '@threadline/contracts';
import { z } from 'zod';
import type { ToolDefinition } from './tool.js';

/** A tool's manifest entry: its name, description, input and output JSON Schemas and approval rule. */
export function toManifestEntry(tool: ToolDefinition): ToolManifestEntry {
  const entry: ToolManifestEntry = {
    name: tool.name,
    description: tool.description,
    inputSchema: toolJsonSchema(tool.input, 'input'),
    outputSchema: toolJsonSchema(tool.output, 'output'),
  };
  if (tool.internal) entry.internal = true;
  if (tool.needsApproval === true) entry.needsApproval = 'always';
  else if (typeof tool.needsApproval === 'function') entry.needsApproval = 'check';
  return entry;
}

/** A tool schema as JSON Schema for the model: standard keywords only, without `$schema`. */
function toolJsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  delete out.$schema;
  return out;
}

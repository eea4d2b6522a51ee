// Extracts the few schemas of the official OpenAI OpenAPI description (github.com/openai/openai-openapi) that the
// fake OpenAI server's spec test validates against, and writes them as a JSON Schema 2020-12 document with $defs:
// test/fixtures/openai-openapi-schemas.json. Only the roots below and the schemas they reference are kept.
//
//   node packages/agent-runner/scripts/extract-openai-schemas.mjs <openapi.yaml|openapi.json> <commit-sha>
//   npx prettier --write packages/agent-runner/test/fixtures/openai-openapi-schemas.json
//
// Adaptations from OpenAPI 3.x to plain JSON Schema (none changes what a schema accepts, except `format`):
// - `$ref: '#/components/schemas/X'` becomes `$ref: '#/$defs/X'`;
// - `nullable: true` (OpenAPI 3.0 style, still used in places) becomes a `null` type / enum member, or an
//   `anyOf` with `{ type: 'null' }` when the schema has no `type` of its own (e.g. next to a `$ref`);
// - `$recursiveRef: '#'` (draft 2019-09) becomes a `$ref` to the schema that holds it, without `$recursiveAnchor`;
// - annotations are dropped (description, title, example(s), default, deprecated, discriminator, x-*), and so
//   is `format`, whose OpenAI values (`unixtime`, ...) are not JSON Schema formats.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOTS = [
  'Response',
  'ResponseCreatedEvent',
  'ResponseInProgressEvent',
  'ResponseOutputItemAddedEvent',
  'ResponseOutputItemDoneEvent',
  'ResponseContentPartAddedEvent',
  'ResponseContentPartDoneEvent',
  'ResponseTextDeltaEvent',
  'ResponseTextDoneEvent',
  'ResponseFunctionCallArgumentsDeltaEvent',
  'ResponseFunctionCallArgumentsDoneEvent',
  'ResponseCompletedEvent',
  'ResponseFailedEvent',
  'ResponseIncompleteEvent',
  'ResponseErrorEvent',
  'CreateChatCompletionResponse',
  'CreateChatCompletionStreamResponse',
  'ErrorResponse',
  'CompactResponseMethodPublicBody',
  'CompactResource',
];

const DROP = new Set([
  'description',
  'title',
  'example',
  'examples',
  'default',
  'deprecated',
  'discriminator',
  'format',
]);
const PREFIX = '#/components/schemas/';

function adapt(node, def) {
  if (Array.isArray(node)) return node.map((n) => adapt(n, def));
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    if (DROP.has(key) || key.startsWith('x-') || key === 'nullable' || key === '$recursiveAnchor') continue;
    // `properties` maps names to schemas: a property may be called `description` or `format`.
    if (key === 'properties') {
      out.properties = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, adapt(v, def)]));
    } else if (key === '$ref') {
      if (!value.startsWith(PREFIX)) throw new Error(`unsupported $ref ${value}`);
      out.$ref = `#/$defs/${value.slice(PREFIX.length)}`;
    } else if (key === '$recursiveRef') {
      // Draft 2019-09 recursion (CompoundFilter): every use in the description points at its own schema.
      if (value !== '#') throw new Error(`unsupported $recursiveRef ${value}`);
      out.$ref = `#/$defs/${def}`;
    } else out[key] = adapt(value, def);
  }
  if (node.nullable !== true) return out;
  if (typeof out.type === 'string') {
    out.type = [out.type, 'null'];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    return out;
  }
  return { anyOf: [out, { type: 'null' }] };
}

function refsOf(node, found = new Set()) {
  if (Array.isArray(node)) node.forEach((n) => refsOf(n, found));
  else if (node && typeof node === 'object')
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && value.startsWith(PREFIX))
        found.add(value.slice(PREFIX.length));
      else refsOf(value, found);
    }
  return found;
}

/** Builds the fixture from a parsed OpenAPI document: the `roots` and every schema they reference. */
export function extract(spec, source, roots = ROOTS) {
  const all = spec.components.schemas;
  const names = new Set();
  const stack = [...roots];
  while (stack.length) {
    const name = stack.pop();
    if (names.has(name)) continue;
    if (!all[name]) throw new Error(`schema ${name} not in the description`);
    names.add(name);
    stack.push(...refsOf(all[name]));
  }
  const $defs = {};
  for (const name of [...names].sort()) $defs[name] = adapt(all[name], name);
  return {
    source: { ...source, openapi: spec.openapi, apiVersion: spec.info?.version, roots },
    schema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $id: 'https://threadline.invalid/openai-openapi-schemas.json',
      $defs,
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, commit] = process.argv.slice(2);
  if (!file || !/^[0-9a-f]{40}$/.test(commit ?? ''))
    throw new Error('usage: extract-openai-schemas.mjs <openapi.yaml|openapi.json> <40-hex commit>');
  const text = readFileSync(file, 'utf8');
  const spec = file.endsWith('.json')
    ? JSON.parse(text)
    : (await import('yaml')).parse(text, { maxAliasCount: -1 });
  const fixture = extract(spec, {
    repository: 'https://github.com/openai/openai-openapi',
    commit,
    file: file.split('/').pop(),
  });
  const target = fileURLToPath(new URL('../test/fixtures/openai-openapi-schemas.json', import.meta.url));
  writeFileSync(target, `${JSON.stringify(fixture, null, 2)}\n`);
  console.log(`${Object.keys(fixture.schema.$defs).length} schemas written to ${target}`);
}

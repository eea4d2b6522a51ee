import { isRecord, responsesUsage, unixNow, type Json } from './wire.js';

// The compact endpoint (`POST /v1/responses/compact`): a deterministic compaction shaped like the API's answer.

/** Prefix of the fake's compaction items' `encrypted_content`, followed by how many items it replaced. */
export const FAKE_COMPACTION_PREFIX = 'fake-compaction:';

/**
 * The compact endpoint's answer (`CompactResource`): like the API, every user message of the input is kept (as a
 * `Message` with `input_text` parts) and everything else is replaced by one `compaction` item, whose
 * `encrypted_content` here is readable: {@link FAKE_COMPACTION_PREFIX} and the number of items replaced. A
 * request without `input` items (e.g. `previous_response_id` only) gets a 400 string: the fake keeps no responses.
 */
export function compactResource(body: Json, n: number): Json | string {
  if (typeof body.model !== 'string' || body.model === '') return 'model is required';
  const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : body.input;
  if (!Array.isArray(input))
    return 'the fake server compacts `input` items only (it keeps no responses for previous_response_id)';
  const output: Json[] = [];
  let replaced = 0;
  input.forEach((item: unknown, i) => {
    if (isRecord(item) && (item.type ?? 'message') === 'message' && item.role === 'user') {
      const parts =
        typeof item.content === 'string' ? [{ type: 'input_text', text: item.content }] : item.content;
      const content = Array.isArray(parts)
        ? parts
            .filter(isRecord)
            .map((p) => ({ type: 'input_text', text: typeof p.text === 'string' ? p.text : '' }))
        : [];
      output.push({ type: 'message', id: `msg_cmp_${n}_${i}`, status: 'completed', role: 'user', content });
    } else replaced++;
  });
  output.push({
    type: 'compaction',
    id: `cmp_${n}`,
    encrypted_content: `${FAKE_COMPACTION_PREFIX}${replaced}`,
  });
  return {
    id: `resp_cmp_${n}`,
    object: 'response.compaction',
    output,
    created_at: unixNow(),
    usage: responsesUsage(),
  };
}

/**
 * Request headers a Node-to-Fetch adapter does not hand on: the hop-by-hop headers and `host` describe the
 * client's connection, and `content-length` the body as it arrived (the adapter passes a stream or a body a
 * parser already read, whose length it sets itself when it knows it). Lower case, as Node reports them.
 *
 * @example
 * for (const [name, value] of Object.entries(req.headers))
 *   if (value !== undefined && !NOT_FORWARDED_REQUEST_HEADERS.has(name)) headers.append(name, String(value));
 */
export const NOT_FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'expect',
]);

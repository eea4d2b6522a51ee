import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agent-chat test</title>
<style>body { margin: 16px; font-family: sans-serif; } agent-chat { width: 560px; --agent-chat-height: 620px; }</style>
<script>
  // Records long tasks from the first moment, for the stress figure.
  window.__longTasks = [];
  try {
    new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
      .observe({ type: 'longtask', buffered: true });
  } catch {}
</script>
<script type="module">
  import { renderMarkdown } from '/agent-chat.js';
  window.__renderMarkdown = renderMarkdown;
</script>
</head><body></body></html>`;

const BUNDLE_SCRIPT = fileURLToPath(new URL('../../scripts/bundle.mjs', import.meta.url));

/** Builds the single-file bundle with scripts/bundle.mjs (what ships) into a temp dir and serves it with a test page. */
export class PageServer {
  private constructor(
    readonly server: Server,
    private readonly dir: string,
    readonly bundleBytes: number,
  ) {}

  /** `setup` may attach more to the HTTP server (e.g. the relay's WebSocket transport) before it listens. */
  static async start(setup?: (server: Server) => void): Promise<PageServer> {
    const dir = await mkdtemp(join(tmpdir(), 'agent-chat-test-'));
    const outfile = join(dir, 'agent-chat.js');
    await promisify(execFile)(process.execPath, [BUNDLE_SCRIPT, outfile]);
    const bundle = await readFile(outfile);
    const server = createServer((req, res) => {
      if (req.url === '/agent-chat.js') {
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(bundle);
      } else if (req.url === '/' || req.url?.startsWith('/?')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      } else res.writeHead(404).end();
    });
    setup?.(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new PageServer(server, dir, bundle.length);
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
  }

  get origin(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }
}

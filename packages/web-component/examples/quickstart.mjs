// Serves examples/quickstart.html and the built bundle (dist/agent-chat.js) on http://localhost:3000, the page
// origin the relay's quick start accepts. A page server for the README's quick start, nothing more: in an app,
// your own server serves the page.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';

if (!existsSync(new URL('../dist/agent-chat.js', import.meta.url))) {
  console.error('dist/agent-chat.js is missing: run `npm run build` in the repository first');
  process.exit(1);
}

const files = {
  '/': ['quickstart.html', 'text/html; charset=utf-8'],
  '/agent-chat.js': ['../dist/agent-chat.js', 'text/javascript; charset=utf-8'],
};
const server = createServer(async (req, res) => {
  const file = files[new URL(req.url ?? '/', 'http://localhost').pathname];
  if (!file) return res.writeHead(404).end();
  res.writeHead(200, { 'content-type': file[1] }).end(await readFile(new URL(file[0], import.meta.url)));
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`agent-chat quick start on http://localhost:${server.address().port}/`);
});

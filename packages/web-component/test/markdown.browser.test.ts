import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { browserSuite, launchChromium } from './helpers/browser.js';

/*
 * The Markdown renderer must do work linear in its input whatever the input is: a crafted message once froze
 * the page for seconds on every load of its thread. These tests count the renderer's work units (its exported
 * counter: characters visited by its loops and given to its anchored regexes), never time, on crafted patterns
 * at n and 4n characters.
 */

const SOURCE = fileURLToPath(new URL('../src/markdown.ts', import.meta.url));
const suite = browserSuite('Markdown renderer work bound');

declare global {
  interface Window {
    __md: { renderMarkdown(source: string): DocumentFragment; markdownWork(): number };
  }
}

/** `unit` repeated to `n` characters. */
const rep = (unit: string, n: number): string => unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
/** `open` repeated, a middle, then `close` repeated: n characters of nesting. */
const nest = (open: string, mid: string, close: string, n: number): string =>
  open.repeat(Math.floor(n / 2 / open.length)) + mid + close.repeat(Math.floor(n / 2 / close.length));
/** Lines built by `line(i)` until the text reaches n characters. */
const lines = (line: (i: number) => string, n: number): string => {
  let out = '';
  for (let i = 0; out.length < n; i++) out += `${line(i)}\n`;
  return out.slice(0, n);
};

const PATTERNS: Record<string, (n: number) => string> = {
  'unclosed *a': (n) => rep('*a', n),
  'unclosed _a': (n) => rep('_a', n),
  'unclosed **a': (n) => rep('**a', n),
  'unclosed ~~a': (n) => rep('~~a', n),
  '**_ nests': (n) => nest('**_', 'x', '_**', n),
  '*_ crossing': (n) => nest('*_', 'x', '*_', n),
  'long * runs': (n) => nest('*', 'a', '*', n),
  'only *': (n) => rep('*', n),
  'openers then other closers': (n) => rep('*a ', n / 2) + rep('b_ ', n / 2),
  'unclosed backticks': (n) => rep('`a', n),
  'backtick runs of every length': (n) => {
    let out = '';
    for (let i = 1; out.length < n; i++) out += `${'`'.repeat(i)}a `; // not cut: a cut run could find a closer
    return out;
  },
  '[ runs': (n) => rep('[', n),
  '[ runs then ](x': (n) => rep('[', n / 2) + rep('](x', n / 2),
  '[ runs then ](x "title': (n) => rep('[', n / 2) + rep('](x', n / 4) + ' "' + rep('t', n / 4),
  'unclosed [a](': (n) => rep('[a](', n),
  '[a](< unclosed': (n) => rep('[a](<', n),
  '<http: unclosed': (n) => rep('<http:a', n),
  'http:// runs': (n) => rep('http://', n),
  'quotes nested on one line': (n) => rep('> ', n) + 'x',
  'list items nested on one line': (n) => rep('- ', n) + 'x',
  'lists nested by indent': (n) => lines((i) => ' '.repeat(2 * i) + '- x', n),
  'quotes nested by line': (n) => lines((i) => '>'.repeat(i + 1) + ' x', n),
  'heading with trailing spaces': (n) => '# ' + rep(' ', n) + 'x',
  'heading with # and spaces': (n) => '# a' + rep(' #', n) + 'x',
  'almost a rule': (n) => '-' + rep(' -', n) + ' x',
  'unclosed fence': (n) => '```\n' + rep('a\n', n),
};

suite('Markdown renderer work bound', () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    const out = await build({
      entryPoints: [SOURCE],
      bundle: true,
      format: 'iife',
      globalName: '__md',
      target: 'es2022',
      write: false,
      logLevel: 'silent',
    });
    browser = await launchChromium();
    page = await browser.newPage();
    await page.setContent('<!doctype html><html><body></body></html>');
    await page.addScriptTag({ content: out.outputFiles[0]!.text });
  });

  afterAll(async () => {
    await browser?.close();
  });

  /** Work units the renderer spends on `source`. */
  const work = (source: string): Promise<number> =>
    page.evaluate((src) => {
      const before = window.__md.markdownWork();
      window.__md.renderMarkdown(src);
      return window.__md.markdownWork() - before;
    }, source);

  it('does work linear in the input on crafted patterns (4x the input, at most ~4x the work)', async () => {
    const N = 10_000;
    const report: string[] = [];
    const failures: string[] = [];
    for (const [name, make] of Object.entries(PATTERNS)) {
      const small = make(N);
      const large = make(4 * N);
      const a = await work(small);
      const b = await work(large);
      // Normalised by the actual lengths, in case a pattern does not scale exactly 4x.
      const ratio = b / a / (large.length / small.length / 4);
      const perChar = b / large.length;
      report.push(`${name}: ${a} -> ${b} (x${ratio.toFixed(2)}, ${perChar.toFixed(1)}/char)`);
      if (ratio > 4.5 || perChar > 50) failures.push(report[report.length - 1]!);
    }
    console.log(`[figure] markdown work at ${N} -> ${4 * N} chars:\n  ${report.join('\n  ')}`);
    expect(failures).toEqual([]);
  });

  it('matches emphasis, code spans and links as before, with escapes, titles and a nesting bound', async () => {
    const html = await page.evaluate(
      (sources) => {
        return sources.map((src) => {
          const div = document.createElement('div');
          div.append(window.__md.renderMarkdown(src));
          return div.innerHTML;
        });
      },
      [
        '***both*** and **a *b* c** and *a **b** c*',
        '\\*not em\\* and a\\_b and \\[x\\](y) and C:\\Users',
        '[t](https://a.example "Title") [e](<https://b.example/x>) [](https://c.example) [js](javascript:x)',
        '[[in](https://a.example)](x) [a [b] c](https://d.example) *a [b* c](https://e.example) d*',
        'x `` a`b `` y ` c ` and `*not em*` and `unclosed',
        '2*3*4 and snake_case and _a_ and __b__ and ~~s~~ and ~c~ and **bold**text',
        'see <https://g.example/a?b> and https://h.example/p).',
        '# Title ##',
        `${'*a '.repeat(12)}${' x*'.repeat(12)}`,
        `${'> '.repeat(12)}deep`,
      ],
    );
    const a = (href: string, text: string): string =>
      `<a href="${href}" target="_blank" rel="noopener noreferrer">${text}</a>`;
    expect(html).toEqual([
      '<p><em><strong>both</strong></em> and <strong>a <em>b</em> c</strong> and <em>a <strong>b</strong> c</em></p>',
      '<p>*not em* and a_b and [x](y) and C:\\Users</p>',
      `<p>${a('https://a.example/', 't')} ${a('https://b.example/x', 'e')} ${a('https://c.example/', 'https://c.example/')} js</p>`,
      `<p>[${a('https://a.example/', 'in')}](x) ${a('https://d.example/', 'a [b] c')} <em>a ${a('https://e.example/', 'b* c')} d</em></p>`,
      '<p>x <code>a`b</code> y <code>c</code> and <code>*not em*</code> and `unclosed</p>',
      '<p>2<em>3</em>4 and snake_case and <em>a</em> and <strong>b</strong> and <s>s</s> and ~c~ and <strong>bold</strong>text</p>',
      `<p>see ${a('https://g.example/a?b', 'https://g.example/a?b')} and ${a('https://h.example/p', 'https://h.example/p')}).</p>`,
      '<h3>Title</h3>',
      // Inline elements nest at most 10 deep; the markers beyond are dropped, their text kept.
      `<p>${'<em>a '.repeat(10)}a a  x x x${'</em> x'.repeat(9)}</em></p>`,
      // Quotes nest at most 10 deep; deeper markers are text.
      `${'<blockquote>'.repeat(10)}<p>&gt; &gt; deep</p>${'</blockquote>'.repeat(10)}`,
    ]);
  });

  it('keeps its regexes free of lazy quantifiers and backreferences (the usual source of backtracking)', () => {
    const code = readFileSync(SOURCE, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    const regexes = code.match(/\/(?![*/])(?:\\.|\[(?:\\.|[^\]])*\]|[^/\n])+\/[dgimsuvy]*/g) ?? [];
    expect(regexes.length).toBeGreaterThan(0);
    expect(regexes.filter((r) => /[*+?}]\?|\\[1-9]/.test(r))).toEqual([]);
  });
});

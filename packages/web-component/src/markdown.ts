/*
 * A compact Markdown renderer that builds DOM nodes directly. Model text only ever becomes Text nodes
 * (createTextNode / textContent) and elements from a fixed list created by this file, so raw HTML in the
 * model's output is shown as text and never parsed: no HTML sanitizer is needed. Links keep only absolute
 * http:, https: and mailto: URLs. Chosen over a library for the size budget (marked ~15 KB gzip, micromark
 * ~16 KB) and because a string-producing renderer would need DOMPurify (~12 KB) on top.
 *
 * Supported: paragraphs (single newlines become line breaks, as chat users expect), # headings (rendered as
 * h3-h6 so they sit below the page's own), fenced code blocks (``` or ~~~, left open while streaming),
 * unordered and ordered lists with nesting, block quotes, horizontal rules, **strong**, *em* / _em_,
 * ~~strike~~, `code`, [links](url "title"), <autolinks>, bare http(s) URLs and backslash escapes.
 *
 * Work is linear in the input whatever it holds (a crafted message must not freeze the page): every pass is a
 * left-to-right scan, no regex here has a lazy quantifier or a backreference (test/markdown.browser.test.ts
 * checks both), and quotes, lists and inline elements nest at most MAX_DEPTH deep.
 */

let work = 0;
/** Units of work done by {@link renderMarkdown} so far (characters visited); tests check it grows linearly. */
export const markdownWork = (): number => work;

const SAFE_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

/** Returns the URL when it is absolute http, https or mailto; undefined for anything else (javascript:, data:, relative). */
export function safeUrl(raw: string): string | undefined {
  try {
    const url = new URL(raw.trim());
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : undefined;
  } catch {
    return undefined;
  }
}

/** Quotes and lists nest at most this deep, and so do inline elements; deeper markers are shown as text. */
const MAX_DEPTH = 10;

// Block patterns are tested against one line each and are anchored; none can backtrack more than linearly.
const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]|$)/;
const RULE = /^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)/;
const LANG = /^[\w+#.-]{1,32}$/;

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, parent: Node): HTMLElementTagNameMap[K] =>
  parent.appendChild(document.createElement(tag));

/** Renders Markdown `source` into a fragment of inert DOM nodes, in time linear in its length. */
export function renderMarkdown(source: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  work += source.length;
  blocks(source.split(/\r\n?|\n/), frag, 0);
  return frag;
}

const startsBlock = (line: string, depth: number): boolean =>
  FENCE.test(line) ||
  HEADING.test(line) ||
  RULE.test(line) ||
  (depth < MAX_DEPTH && (QUOTE.test(line) || ITEM.test(line)));

function blocks(lines: string[], parent: Node, depth: number): void {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    work += line.length + 1;
    let m: RegExpExecArray | null;
    if (!line.trim()) {
      i++;
    } else if ((m = FENCE.exec(line))) {
      const fence = m[1] as string;
      const body: string[] = [];
      for (i++; i < lines.length; i++) {
        const l = lines[i] as string;
        work += l.length + 1;
        if (l.trim().startsWith(fence) && l.trim().replace(/[`~]/g, '') === '') {
          i++;
          break;
        }
        body.push(l);
      }
      const pre = el('pre', parent);
      const code = el('code', pre);
      if (m[2] && LANG.test(m[2])) code.dataset.lang = m[2];
      code.textContent = body.join('\n');
    } else if ((m = HEADING.exec(line))) {
      // Closing #s are dropped when a space precedes them ("## Title ##").
      let text = line.slice(m[0].length).trim();
      let end = text.length;
      while (end && text[end - 1] === '#') end--;
      if (!end || text[end - 1] === ' ' || text[end - 1] === '\t') text = text.slice(0, end).trimEnd();
      inline(text, el(`h${Math.min(6, (m[1] as string).length + 2)}` as 'h3', parent));
      i++;
    } else if (RULE.test(line)) {
      el('hr', parent);
      i++;
    } else if (depth < MAX_DEPTH && QUOTE.test(line)) {
      const body: string[] = [];
      for (; i < lines.length && QUOTE.test(lines[i] as string); i++) {
        work += (lines[i] as string).length;
        body.push((lines[i] as string).replace(QUOTE, ''));
      }
      blocks(body, el('blockquote', parent), depth + 1);
    } else if (depth < MAX_DEPTH && ITEM.test(line)) {
      i = list(lines, i, parent, depth);
    } else {
      const p = el('p', parent);
      const body: string[] = [];
      for (
        ;
        i < lines.length &&
        (lines[i] as string).trim() &&
        (body.length === 0 || !startsBlock(lines[i] as string, depth));
        i++
      ) {
        work += (lines[i] as string).length;
        body.push((lines[i] as string).trim());
      }
      body.forEach((l, n) => {
        if (n) el('br', p);
        inline(l, p);
      });
    }
  }
}

/** Renders the list starting at `lines[start]`; returns the index after it. */
function list(lines: string[], start: number, parent: Node, depth: number): number {
  const first = ITEM.exec(lines[start] as string) as RegExpExecArray;
  const ordered = /\d/.test(first[2] as string);
  const listEl = el(ordered ? 'ol' : 'ul', parent);
  if (ordered) {
    const n = parseInt(first[2] as string, 10);
    if (n !== 1) (listEl as HTMLOListElement).start = n;
  }
  let i = start;
  while (i < lines.length) {
    const m = ITEM.exec(lines[i] as string);
    if (!m || /\d/.test(m[2] as string) !== ordered) break;
    const indent = (m[0] as string).length;
    const body = [(lines[i] as string).slice(indent)];
    for (i++; i < lines.length; i++) {
      const l = lines[i] as string;
      work += l.length + 1;
      const lead = l.length - l.trimStart().length;
      if (!l.trim()) {
        const next = lines[i + 1];
        if (next !== undefined && next.trim() && next.length - next.trimStart().length >= indent) {
          body.push('');
          continue;
        }
        break;
      }
      if (lead >= Math.min(indent, 4)) body.push(l.slice(Math.min(indent, lead)));
      else if (startsBlock(l, depth)) break;
      else body.push(l.trim()); // lazy continuation of the item's paragraph
    }
    const li = el('li', listEl);
    blocks(body, li, depth + 1);
    // Tight list: an item that is a single paragraph shows its text without the paragraph's margins.
    const only = li.firstChild;
    if (only && only === li.lastChild && only.nodeName === 'P')
      li.replaceChildren(...Array.from(only.childNodes));
    if (i < lines.length && !(lines[i] as string).trim()) {
      const next = lines[i + 1];
      if (next === undefined || !ITEM.test(next)) break;
      i++;
    }
  }
  return i;
}

/*
 * Inline Markdown in three linear passes over one line: tokens, emphasis matching, DOM.
 * Tokens: text, code spans (a backtick run closed by the next run of the same length, found through an index
 * built up front), URLs, emphasis delimiter runs and link brackets. Emphasis is matched with a delimiter stack
 * as CommonMark describes; a closer only searches when an opener of its kind is open, and everything it passes
 * over is dropped from the stack, so each delimiter is visited a bounded number of times. A link's label is
 * matched on its own when its `](url)` is found, so emphasis never crosses a link. Scans for link
 * destinations and URLs remember where they stopped and never cover the same text twice.
 */

interface Delim {
  k: 3;
  /** `*`, `_` or `~`. */
  c: string;
  /** Characters of the run not used by a match: shown as text. */
  n: number;
  open: boolean;
  close: boolean;
  /** Elements this run closes (it comes right after their content). */
  closes: number;
  /** Elements this run opens, innermost first. */
  opens: Array<'em' | 'strong' | 's'>;
}

/** `[`: plain text unless a link was found (`href` a safe URL, or null for a dropped unsafe one). */
interface Bracket {
  k: 4;
  href?: string | null;
}

type Token = { k: 0 | 1 | 2; s: string } | Delim | Bracket | { k: 5 };

const SPACE = /\s/;
const PUNCT = /[\p{P}\p{S}]/u;
const ESCAPABLE = /[!-/:-@[-_{-~]/; // ASCII punctuation except the backtick (code spans are found up front)
const AUTOLINK = /<(?:https?|mailto):/y;
const BARE_URL = /https?:\/\//y;
const URL_STOP = /[\s<>]/;
const DEST_STOP = /[\s)>]/;
const URL_TRAIL = /[.,;:!?'")\]]/;

function inline(text: string, parent: Node): void {
  const len = text.length;
  work += len;
  const toks: Token[] = [];
  const delims: Delim[] = [];
  const brackets: Array<{ t: Bracket; d: number }> = [];
  const runAt: number[] = [];
  const runLen: number[] = [];
  const closer: number[] = [];
  for (const m of text.matchAll(/`+/g)) {
    runAt.push(m.index);
    runLen.push(m[0].length);
  }
  const last = new Map<number, number>();
  for (let r = runAt.length; r--;) {
    closer[r] = last.get(runLen[r] as number) ?? -1;
    last.set(runLen[r] as number, r);
  }
  const tails = new Map<number, number>();
  let r = 0;
  let plain = 0;
  let destEnd = -1;
  let urlEnd = -1;
  const flush = (end: number): void => {
    if (end > plain) toks.push({ k: 0, s: text.slice(plain, end) });
    plain = end;
  };
  // The first character of `stop` at or after `from`. Callers ask with growing `from`, so a scan that ended
  // at or after `from` already has the answer.
  const stopAt = (from: number, end: number, stop: RegExp): number => {
    if (from <= end) return end;
    for (end = from; end < len && !stop.test(text[end] as string);) end++;
    work += end - from;
    return end;
  };
  // After a destination that ends at `q`: optional "title", then `)`. Returns the index after `)`, or -1.
  const tail = (q: number): number => {
    while (text[q] === ' ' || text[q] === '\t') q++;
    if (text[q] === '"' && SPACE.test(text[q - 1] as string)) {
      const close = text.indexOf('"', q + 1);
      if (close < 0) return -1;
      work += close - q;
      for (q = close + 1; text[q] === ' ' || text[q] === '\t';) q++;
    }
    return text[q] === ')' ? q + 1 : -1;
  };

  for (let i = 0; i < len;) {
    work++;
    const ch = text[i] as string;
    if (ch === '\\' && ESCAPABLE.test(text[i + 1] ?? '')) {
      flush(i);
      plain = i + 1;
      i += 2;
    } else if (ch === '`') {
      while ((runAt[r] as number) < i) r++;
      const c = closer[r] as number;
      const n = runLen[r] as number;
      if (runAt[r] !== i || c < 0) {
        // No closing run of the same length: the run is text.
        i += runAt[r] === i ? n : 1;
        continue;
      }
      flush(i);
      let s = text.slice(i + n, runAt[c]);
      work += s.length;
      if (s.length > 2 && s[0] === ' ' && s[s.length - 1] === ' ' && s.trim()) s = s.slice(1, -1);
      toks.push({ k: 1, s });
      i = plain = (runAt[c] as number) + (runLen[c] as number);
      r = c + 1;
    } else if (ch === '*' || ch === '_' || ch === '~') {
      let j = i + 1;
      while (text[j] === ch) j++;
      work += j - i;
      const before = text[i - 1] ?? ' ';
      const after = text[j] ?? ' ';
      const left = !SPACE.test(after) && (!PUNCT.test(after) || SPACE.test(before) || PUNCT.test(before));
      const right = !SPACE.test(before) && (!PUNCT.test(before) || SPACE.test(after) || PUNCT.test(after));
      // An underscore inside a word (snake_case) neither opens nor closes.
      const open = left && (ch !== '_' || !right || PUNCT.test(before));
      const close = right && (ch !== '_' || !left || PUNCT.test(after));
      if ((open || close) && (ch !== '~' || j - i === 2)) {
        flush(i);
        const d: Delim = { k: 3, c: ch, n: j - i, open, close, closes: 0, opens: [] };
        toks.push(d);
        delims.push(d);
        plain = j;
      }
      i = j;
    } else if (ch === '[') {
      flush(i);
      const t: Bracket = { k: 4 };
      toks.push(t);
      brackets.push({ t, d: delims.length });
      plain = ++i;
    } else if (ch === ']' && brackets.length) {
      const b = brackets.pop() as { t: Bracket; d: number };
      if (text[i + 1] !== '(') {
        i++;
        continue;
      }
      let p = i + 2;
      while (text[p] === ' ' || text[p] === '\t') p++;
      const angle = text[p] === '<';
      if (angle) p++;
      destEnd = stopAt(p, destEnd, DEST_STOP);
      let q = destEnd;
      if (angle) q = text[q] === '>' ? q + 1 : len + 1;
      let end = tails.get(q);
      if (end === undefined) tails.set(q, (end = q > len ? -1 : tail(q)));
      if (end < 0) {
        i++;
        continue;
      }
      flush(i);
      emphasis(delims.splice(b.d));
      b.t.href = safeUrl(text.slice(p, destEnd)) ?? null;
      toks.push({ k: 5 });
      brackets.length = 0; // no links inside links: the inner one wins
      i = plain = end;
    } else if (ch === '<' && ((AUTOLINK.lastIndex = i), AUTOLINK.test(text))) {
      const from = AUTOLINK.lastIndex;
      urlEnd = stopAt(from, urlEnd, URL_STOP);
      if (urlEnd > from && text[urlEnd] === '>') {
        flush(i);
        toks.push({ k: 2, s: text.slice(i + 1, urlEnd) });
        i = plain = urlEnd + 1;
      } else i++;
    } else if (
      ch === 'h' &&
      !/\w/.test(text[i - 1] ?? ' ') &&
      ((BARE_URL.lastIndex = i), BARE_URL.test(text))
    ) {
      const from = BARE_URL.lastIndex;
      let e = (urlEnd = stopAt(from, urlEnd, URL_STOP));
      while (e > from && URL_TRAIL.test(text[e - 1] as string)) e--;
      work += urlEnd - e;
      if (e > from) {
        flush(i);
        toks.push({ k: 2, s: text.slice(i, e) });
        i = plain = e;
      } else i = from;
    } else i++;
  }
  flush(len);
  emphasis(delims);

  const stack: Node[] = [parent];
  let inLink = false;
  let pending = '';
  // Text is collected until the next element or element end, so a run of text tokens makes one Text node.
  const top = (): Node => {
    const node = stack[stack.length - 1] as Node;
    if (pending) node.appendChild(document.createTextNode(pending));
    pending = '';
    return node;
  };
  const add = (s: string): void => void (pending += s);
  const push = (tag: 'em' | 'strong' | 's' | 'a'): Node =>
    stack[stack.push(stack.length > MAX_DEPTH ? top() : el(tag, top())) - 1] as Node;
  for (const t of toks) {
    work++;
    if (t.k === 0) add(t.s);
    else if (t.k === 1) el('code', top()).textContent = t.s;
    else if (t.k === 2) {
      const url = inLink ? undefined : safeUrl(t.s);
      if (url) anchor(el('a', top()), url).textContent = t.s;
      else add(t.s);
    } else if (t.k === 3) {
      for (let c = t.closes; c--; stack.pop()) top();
      if (t.n) add(t.c.repeat(t.n));
      for (let o = t.opens.length; o--;) push(t.opens[o] as 'em');
    } else if (t.k === 4) {
      if (t.href === undefined) add('[');
      else if (t.href === null)
        stack.push(top()); // unsafe destination: keep the label, drop the link
      else {
        inLink = true;
        const a = push('a');
        if (a instanceof HTMLAnchorElement) anchor(a, t.href);
      }
    } else {
      const a = top();
      stack.pop();
      inLink = false;
      if (a instanceof HTMLAnchorElement && !a.firstChild) a.textContent = a.href;
    }
  }
  top();
}

/** Matches the delimiter runs of one label or line, as pairs of emphasis (see `inline`). */
function emphasis(ds: Delim[]): void {
  const stack: Delim[] = [];
  const open: Record<string, number> = { '*': 0, _: 0, '~': 0 };
  for (const d of ds) {
    work++;
    while (d.close && d.n && open[d.c]) {
      let k = stack.length - 1;
      // Openers of other kinds above the match can no longer be closed: they stay text.
      for (; (stack[k] as Delim).c !== d.c; k--) {
        work++;
        (open[(stack[k] as Delim).c] as number)--;
      }
      const o = stack[k] as Delim;
      const use = o.n > 1 && d.n > 1 ? 2 : 1;
      o.n -= use;
      d.n -= use;
      o.opens.push(d.c === '~' ? 's' : use > 1 ? 'strong' : 'em');
      d.closes++;
      stack.length = o.n ? k + 1 : k;
      if (!o.n) (open[d.c] as number)--;
    }
    if (d.open && d.n) {
      stack.push(d);
      (open[d.c] as number)++;
    }
  }
}

function anchor(a: HTMLAnchorElement, href: string): HTMLAnchorElement {
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}

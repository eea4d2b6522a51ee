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
 * ~~strike~~, `code`, [links](url), <autolinks> and bare http(s) URLs.
 */

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

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(\s+|$)/;
const LANG = /^[\w+#.-]{1,32}$/;

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, parent: Node): HTMLElementTagNameMap[K] =>
  parent.appendChild(document.createElement(tag));

/** Renders Markdown `source` into a fragment of inert DOM nodes. */
export function renderMarkdown(source: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  blocks(source.split(/\r\n?|\n/), frag);
  return frag;
}

const startsBlock = (line: string): boolean =>
  FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);

function blocks(lines: string[], parent: Node): void {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    let m: RegExpExecArray | null;
    if (!line.trim()) {
      i++;
    } else if ((m = FENCE.exec(line))) {
      const fence = m[1] as string;
      const body: string[] = [];
      for (i++; i < lines.length; i++) {
        const l = lines[i] as string;
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
      inline(m[2] ?? '', el(`h${Math.min(6, (m[1] as string).length + 2)}` as 'h3', parent));
      i++;
    } else if (RULE.test(line)) {
      el('hr', parent);
      i++;
    } else if (QUOTE.test(line)) {
      const body: string[] = [];
      for (; i < lines.length && QUOTE.test(lines[i] as string); i++)
        body.push((lines[i] as string).replace(QUOTE, ''));
      blocks(body, el('blockquote', parent));
    } else if (ITEM.test(line)) {
      i = list(lines, i, parent);
    } else {
      const p = el('p', parent);
      const body: string[] = [];
      for (
        ;
        i < lines.length &&
        (lines[i] as string).trim() &&
        (body.length === 0 || !startsBlock(lines[i] as string));
        i++
      ) {
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
function list(lines: string[], start: number, parent: Node): number {
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
      else if (ITEM.test(l) || startsBlock(l)) break;
      else body.push(l.trim()); // lazy continuation of the item's paragraph
    }
    const li = el('li', listEl);
    blocks(body, li);
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

// One pass over the text: code spans first (their content is literal), then links, emphasis and URLs.
const INLINE =
  /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\[([^\]\n]{0,2000})\]\(\s*<?([^\s)>]{0,4000})>?(?:\s+"[^"\n]*")?\s*\)|(\*\*|__)(?=\S)([\s\S]*?\S)\5|(\*|_)(?=[^\s*_])([\s\S]*?[^\s\\])\7(?![\w*])|~~(?=\S)([\s\S]*?\S)~~|<((?:https?|mailto):[^\s<>]+)>|\bhttps?:\/\/[^\s<>]*[^\s<>.,;:!?'")\]]/g;

function inline(text: string, parent: Node, inLink = false): void {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    const at = m.index;
    // An underscore inside a word (snake_case) is not emphasis.
    if (m[7] === '_' && at > 0 && /\w/.test(text[at - 1] as string)) continue;
    if (at > last) parent.appendChild(document.createTextNode(text.slice(last, at)));
    last = at + m[0].length;
    if (m[1]) {
      el('code', parent).textContent = (m[2] as string).replace(/^ (.+) $/, '$1');
    } else if (m[3] !== undefined) {
      link(m[4] as string, m[3], parent, inLink);
    } else if (m[5]) {
      inline(m[6] as string, el('strong', parent), inLink);
    } else if (m[7]) {
      inline(m[8] as string, el('em', parent), inLink);
    } else if (m[9] !== undefined) {
      inline(m[9], el('s', parent), inLink);
    } else {
      const url = m[10] ?? m[0];
      link(url, url, parent, inLink, true);
    }
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

function link(href: string, label: string, parent: Node, inLink: boolean, literal = false): void {
  const url = inLink ? undefined : safeUrl(href);
  if (!url) {
    // Unsafe or nested: keep the visible text, drop the link.
    if (literal) parent.appendChild(document.createTextNode(label));
    else inline(label, parent, inLink);
    return;
  }
  const a = el('a', parent);
  a.href = url;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  if (literal) a.textContent = label;
  else inline(label || url, a, true);
}

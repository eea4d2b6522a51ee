/** Longest title {@link titleFromMessage} makes, in characters (code points), the ellipsis included. */
export const AUTO_TITLE_MAX_LENGTH = 60;

/**
 * A thread title made from its first user message, with no model call: whitespace collapsed, and at most
 * {@link AUTO_TITLE_MAX_LENGTH} characters, cut at the last word boundary that fits (or inside a word longer
 * than that) and ended with "…". '' for a message of whitespace only.
 *
 * @example
 * titleFromMessage('  Plan a   trip to Lisbon\nin May '); // 'Plan a trip to Lisbon in May'
 */
export function titleFromMessage(text: string): string {
  const flat = text.replace(/\s+/gu, ' ').trim();
  const chars = Array.from(flat);
  if (chars.length <= AUTO_TITLE_MAX_LENGTH) return flat;
  const room = chars.slice(0, AUTO_TITLE_MAX_LENGTH - 1);
  const space = room.lastIndexOf(' ');
  // A boundary in the first third would leave a stub of a title: cut the long word instead.
  const cut = space >= AUTO_TITLE_MAX_LENGTH / 3 ? room.slice(0, space) : room;
  return `${cut.join('').replace(/[\s.,;:!?-]+$/u, '')}…`;
}

/*
 * wsnotify.v1 cursors.  The bridge's `id` is a decimal string, increasing in
 * commit order (docs/protocol.md).  It may exceed 2^53, so it is compared as
 * a decimal string, never converted to a Number.
 */

const DECIMAL = /^[0-9]+$/;

/** Drop leading zeros so that the length orders decimal strings. */
function canonical(s: string): string {
  const t = s.replace(/^0+/, '');
  return t === '' ? '0' : t;
}

/**
 * Compare two cursors: negative when a < b, 0 when equal, positive when
 * a > b; null when they cannot be ordered (not both decimal and unequal).
 */
export function compareCursor(a: string, b: string): number | null {
  if (!DECIMAL.test(a) || !DECIMAL.test(b)) return a === b ? 0 : null;
  const x = canonical(a);
  const y = canonical(b);
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** True when a message with cursor `id` was already seen, given the last cursor kept. */
export function isDuplicate(id: string, last: string | null): boolean {
  if (last === null) return false;
  const c = compareCursor(id, last);
  return c !== null && c <= 0;
}

// 64-bit FNV-1a over the UTF-8 bytes of a string, in four 16-bit limbs so every intermediate
// product stays exact in a double (no BigInt in the loop). The result is returned as the signed
// 64-bit decimal PostgreSQL stores in a BIGINT column.

// Hash state of the running computation (module-level: the function is not re-entrant, and
// returning the limbs from a helper would allocate per byte).
let h0 = 0;
let h1 = 0;
let h2 = 0;
let h3 = 0;

/** hash = (hash ^ byte) * 0x100000001b3 mod 2^64; the prime is 2^40 + 0x1b3. */
function step(byte: number): void {
  h0 ^= byte;
  const t0 = h0 * 0x1b3;
  let t1 = h1 * 0x1b3;
  let t2 = h2 * 0x1b3 + (h0 << 8);
  let t3 = h3 * 0x1b3 + (h1 << 8);
  t1 += t0 >>> 16;
  t2 += t1 >>> 16;
  t3 += t2 >>> 16;
  h0 = t0 & 0xffff;
  h1 = t1 & 0xffff;
  h2 = t2 & 0xffff;
  h3 = t3 & 0xffff;
}

function codePointAt(text: string, i: number): number {
  const cp = text.charCodeAt(i);
  if (cp < 0xd800 || cp > 0xdfff) return cp;
  if (cp <= 0xdbff && i + 1 < text.length) {
    const lo = text.charCodeAt(i + 1);
    if (lo >= 0xdc00 && lo <= 0xdfff) return 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  return 0xfffd; // lone surrogate: what a UTF-8 encoder writes for it
}

/** FNV-1a 64 of `text`'s UTF-8 encoding as a signed decimal string. */
export function fnv1a64Signed(text: string): string {
  h0 = 0x2325;
  h1 = 0x8422;
  h2 = 0x9ce4;
  h3 = 0xcbf2;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      step(c);
      continue;
    }
    const cp = codePointAt(text, i);
    if (cp < 0x800) {
      step(0xc0 | (cp >> 6));
    } else if (cp < 0x10000) {
      step(0xe0 | (cp >> 12));
      step(0x80 | ((cp >> 6) & 0x3f));
    } else {
      step(0xf0 | (cp >> 18));
      step(0x80 | ((cp >> 12) & 0x3f));
      step(0x80 | ((cp >> 6) & 0x3f));
      i++; // the low surrogate was consumed with the high one
    }
    step(0x80 | (cp & 0x3f));
  }
  const hi = ((h3 << 16) | h2) >>> 0;
  const lo = ((h1 << 16) | h0) >>> 0;
  return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
}

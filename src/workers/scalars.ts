// Fast validators for the scalar fields of exchange messages: exact decimals (passed through as
// the exchange wrote them, never through binary floats), RFC3339 timestamps, UUIDs, tickers.
// Each returns a sentinel instead of throwing so the hot path stays branch-cheap.

/** Decimal shapes by column type: NUMERIC(12,6) prices, NUMERIC(20,2) sizes. */
export const PRICE_INT_DIGITS_MAX = 6;
export const PRICE_SCALE_MAX = 6;
export const SIZE_INT_DIGITS_MAX = 18;
export const SIZE_SCALE_MAX = 2;

const CH_0 = 48;
const CH_9 = 57;
const CH_DOT = 46;
const CH_MINUS = 45;

/**
 * True when `s` is `[-]digits[.digits]` with 1..intDigitsMax integer digits and
 * 1..scaleMax fraction digits when a dot is present (sign only when `signed`).
 */
export function isDecimal(s: unknown, signed: boolean, intDigitsMax: number, scaleMax: number): s is string {
  if (typeof s !== 'string') return false;
  const n = s.length;
  let i = 0;
  if (signed && n > 0 && s.charCodeAt(0) === CH_MINUS) i = 1;
  const intStart = i;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c < CH_0 || c > CH_9) break;
    i++;
  }
  const intDigits = i - intStart;
  if (intDigits === 0 || intDigits > intDigitsMax) return false;
  if (i === n) return true;
  if (s.charCodeAt(i) !== CH_DOT) return false;
  i++;
  const fracStart = i;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c < CH_0 || c > CH_9) return false;
    i++;
  }
  const fracDigits = i - fracStart;
  return fracDigits >= 1 && fracDigits <= scaleMax;
}

export const isPrice = (s: unknown): s is string => isDecimal(s, false, PRICE_INT_DIGITS_MAX, PRICE_SCALE_MAX);
export const isSize = (s: unknown): s is string => isDecimal(s, false, SIZE_INT_DIGITS_MAX, SIZE_SCALE_MAX);
export const isSignedSize = (s: unknown): s is string => isDecimal(s, true, SIZE_INT_DIGITS_MAX, SIZE_SCALE_MAX);

/** Accepted exchange-time window (µs): 2000-01-01 .. 2200-01-01. Outside is a bad timestamp. */
export const TS_US_MIN = 946_684_800_000_000;
export const TS_US_MAX = 7_258_118_400_000_000;

function digits(s: string, at: number, count: number): number {
  let v = 0;
  for (let i = at; i < at + count; i++) {
    const c = s.charCodeAt(i) - CH_0;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

const DAYS_IN_MONTH = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const isLeap = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;

/**
 * Parses `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00)` to µs since the epoch (fraction truncated to
 * µs), or returns -1. Only UTC is accepted: the exchange sends Z, and another offset would mean
 * a producer we do not understand.
 */
export function parseRfc3339Us(s: unknown): number {
  if (typeof s !== 'string' || s.length < 20 || s.length > 35) return -1;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || (s.charCodeAt(10) | 0x20) !== 0x74) return -1;
  if (s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return -1;
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) return -1;
  if (day > DAYS_IN_MONTH[month]! || (month === 2 && day === 29 && !isLeap(year))) return -1;
  let i = 19;
  let micros = 0;
  if (s.charCodeAt(i) === CH_DOT) {
    i++;
    const start = i;
    while (i < s.length) {
      const c = s.charCodeAt(i) - CH_0;
      if (c < 0 || c > 9) break;
      if (i - start < 6) micros = micros * 10 + c;
      i++;
    }
    const count = i - start;
    if (count === 0 || count > 9) return -1;
    for (let k = count; k < 6; k++) micros *= 10;
  }
  const rest = s.length - i;
  if (!((rest === 1 && (s.charCodeAt(i) | 0x20) === 0x7a) || (rest === 6 && s.endsWith('+00:00')))) return -1;
  const us = (daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second) * 1_000_000 + micros;
  return us >= TS_US_MIN && us < TS_US_MAX ? us : -1;
}

/** µs from an integer count of `unitUs`-sized units (ms: 1000, s: 1e6), or -1 when invalid. */
export function unitsToUs(value: unknown, unitUs: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) return -1;
  const us = value * unitUs;
  return us >= TS_US_MIN && us < TS_US_MAX ? us : -1;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
export const isUuid = (s: unknown): s is string => typeof s === 'string' && s.length === 36 && UUID.test(s);

/** Market / event tickers: printable ASCII without spaces, bounded. */
const TICKER = /^[\x21-\x7e]{1,128}$/;
export const isTicker = (s: unknown): s is string => typeof s === 'string' && TICKER.test(s);

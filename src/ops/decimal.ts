// Exact decimal arithmetic for prices and sizes read back from PostgreSQL NUMERIC columns: values
// are scaled integers (bigint, 10^-6 units), never binary floats. Prices are NUMERIC(12,6) and
// sizes NUMERIC(20,2), so six decimals hold both exactly.
import { KdpError } from '../core/errors';

export const SCALE = 6;
const FACTOR = 10n ** BigInt(SCALE);
const DECIMAL_RE = /^(-?)(\d+)(?:\.(\d+))?$/;

/** "0.3600" -> 360000n. Rejects anything that is not a plain decimal or needs more than 6 decimals. */
export function parseScaled(text: string): bigint {
  const m = DECIMAL_RE.exec(text.trim());
  if (!m) throw new KdpError('KDP_ERR_MSG_DECIMAL', `not a decimal number: ${JSON.stringify(text)}`);
  const [, sign, whole, fracRaw = ''] = m;
  const significant = fracRaw.replace(/0+$/, '');
  if (significant.length > SCALE) {
    throw new KdpError('KDP_ERR_MSG_DECIMAL', `${text} has more than ${SCALE} decimals`);
  }
  const value = BigInt(whole!) * FACTOR + BigInt(significant.padEnd(SCALE, '0') || '0');
  return sign === '-' ? -value : value;
}

/** 360000n -> "0.36" (trailing zeros trimmed, at least `minDecimals` decimals). */
export function formatScaled(value: bigint, minDecimals = 2): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = abs / FACTOR;
  let frac = (abs % FACTOR).toString().padStart(SCALE, '0').replace(/0+$/, '');
  if (frac.length < minDecimals) frac = frac.padEnd(minDecimals, '0');
  return `${negative ? '-' : ''}${whole}${frac ? '.' + frac : ''}`;
}

/** The canonical text of a decimal (so "0.360000" and "0.36" compare equal). */
export const canonicalDecimal = (text: string): string => formatScaled(parseScaled(text));

/** One dollar in scaled units: the implied ask of one side is ONE minus the other side's bid. */
export const ONE = FACTOR;

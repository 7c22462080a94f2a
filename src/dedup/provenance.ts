// Per-row provenance: each gatherer name owns one bit of production's `delivered_by` masks, kept
// in `gatherer_bits` (migration 4) so the meaning of a bit survives configuration reorderings,
// renames and restarts. A name gets the lowest free bit the first time it is merged.
import type { ClientBase } from 'pg';
import { KdpError } from '../core/errors';
import { GATHERER_BITS_MAX } from '../schema/tables';

// One assignment at a time across deduplicators (two taking the same free bit would make one
// fail on the UNIQUE bit); held to the end of its short transaction.
const LOCK_BITS = `SELECT pg_advisory_xact_lock(hashtext('kdp.dedup.gatherer_bits'))`;
const ASSIGN_BIT = `INSERT INTO gatherer_bits (gatherer, bit, assigned_at)
  SELECT $1, min(b), $2 FROM generate_series(0, ${GATHERER_BITS_MAX - 1}) AS b
  WHERE b NOT IN (SELECT bit FROM gatherer_bits) AND NOT EXISTS (SELECT 1 FROM gatherer_bits WHERE gatherer = $1)
  HAVING min(b) IS NOT NULL`;
const READ_BIT = `SELECT bit FROM gatherer_bits WHERE gatherer = $1`;

/** The bit of `gatherer` in delivered_by, assigned on first use. `client` must have no open transaction. */
export async function gathererBit(client: ClientBase, gatherer: string, nowUs: number): Promise<number> {
  const known = await client.query(READ_BIT, [gatherer]);
  if (known.rowCount) return Number(known.rows[0].bit);
  await client.query('BEGIN');
  try {
    await client.query(LOCK_BITS);
    await client.query(ASSIGN_BIT, [gatherer, nowUs]);
    const r = await client.query(READ_BIT, [gatherer]);
    await client.query('COMMIT');
    if (r.rowCount) return Number(r.rows[0].bit);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  throw new KdpError('KDP_ERR_GATHERER_BITS_EXHAUSTED', `every delivered_by bit (${GATHERER_BITS_MAX}) is taken; gatherer ${gatherer} has none`, {
    gatherer,
  });
}

/** delivered_by mask of one bit. */
export const maskOf = (bit: number): bigint => 1n << BigInt(bit);

// Coverage certificates beside the archive: for every hour raw/ exported (new or again, after late
// rows), the certificates of every market in that hour (src/coverage/certificate.ts) go to
// `<raw prefix>/_coverage/date=YYYY-MM-DD/hour=HH/certificates.json.gz` (gzip JSON array; the
// leading underscore keeps it out of *.parquet globs and Hive discovery), with a per-grade count
// in `_coverage/…/_manifest.json`, and into production's `coverage_certificates` (one row per
// market and hour, replaced on re-certification), so they stay queryable with SQL.
// Hours are those of the archive's time columns; the certificate's own clock is the platform's
// receive clock (its gap windows): an hour boundary can differ by the exchange-to-receipt delay.
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import type { ClientBase } from 'pg';
import { classifyDbError } from '../core/errors';
import { certificateFor, type CoverageCertificate } from '../coverage/certificate';
import { recordExport } from './cursors';
import { ARCHIVE_FORMAT_VERSION, HOUR_US, partitionPath, type PartitionResult } from './layout';
import type { ObjectStore } from './store';

/** export_cursors name of the certificates of an hour. */
export const COVERAGE_CURSOR = 'raw/_coverage';

export interface CertifySession {
  readonly client: ClientBase;
  readonly store: ObjectStore;
  readonly rawPrefix: string;
  readonly onPartition: (r: PartitionResult) => void;
}

const UPSERT_SQL = `
  INSERT INTO coverage_certificates (ticker, hour_start, grade, covered_seconds, window_seconds, certificate, certified_at)
  SELECT c->>'ticker', (c->>'hourStartUs')::bigint, c->>'grade', (c->>'coveredSeconds')::numeric, (c->>'windowSeconds')::numeric, c, $2
    FROM jsonb_array_elements($1::jsonb) AS c
  ON CONFLICT (ticker, hour_start) DO UPDATE SET grade = EXCLUDED.grade, covered_seconds = EXCLUDED.covered_seconds,
    window_seconds = EXCLUDED.window_seconds, certificate = EXCLUDED.certificate, certified_at = EXCLUDED.certified_at`;

/** Rows per upsert statement: bounds the JSON parameter (~1 KiB per certificate). */
const UPSERT_ROWS_MAX = 2_000;

/** Certifies one hour: store object + manifest, production rows, cursor row last. */
export async function certifyHour(s: CertifySession, hourStartUs: number, reason: 'new' | 'late'): Promise<CoverageCertificate[]> {
  const certificates = await certificateFor(s.client, { fromUs: hourStartUs, toUs: hourStartUs + HOUR_US });
  const path = partitionPath(s.rawPrefix, '_coverage', hourStartUs);
  const objectKey = path.objectKey.replace(/part-00000\.parquet$/, 'certificates.json.gz');
  const bytes = gzipSync(JSON.stringify(certificates));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const grades: Record<string, number> = { complete: 0, recovered: 0, incomplete: 0 };
  for (const c of certificates) grades[c.grade] = (grades[c.grade] ?? 0) + 1;
  await s.store.putBytes(objectKey, bytes, 'application/gzip');
  const manifest = {
    formatVersion: ARCHIVE_FORMAT_VERSION,
    hourStartUs,
    hourEndUs: hourStartUs + HOUR_US,
    object: objectKey,
    certificates: certificates.length,
    grades,
    sha256,
  };
  await s.store.putBytes(path.manifestKey, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'), 'application/json');
  const certifiedAtUs = Date.now() * 1000;
  try {
    for (let i = 0; i < certificates.length; i += UPSERT_ROWS_MAX) {
      await s.client.query(UPSERT_SQL, [JSON.stringify(certificates.slice(i, i + UPSERT_ROWS_MAX)), certifiedAtUs]);
    }
    await recordExport(s.client, COVERAGE_CURSOR, { hourStartUs, rowCount: certificates.length, maxMergedAtUs: 0, objectKey, checksum: sha256 }, certifiedAtUs);
  } catch (err) {
    throw classifyDbError(err);
  }
  s.onPartition({ table: COVERAGE_CURSOR, hourStartUs, objectKey, rows: certificates.length, bytes: bytes.length, sha256, reason });
  return certificates;
}

/** Certifies every hour raw/ exported in this cycle (each once, in order). */
export async function certifyExported(s: CertifySession, exported: readonly PartitionResult[], signal?: AbortSignal): Promise<void> {
  const hours = new Map<number, 'new' | 'late'>();
  for (const p of exported) {
    if (p.table.includes('/')) continue; // derived datasets and certificates themselves
    if (hours.get(p.hourStartUs) !== 'new') hours.set(p.hourStartUs, p.reason);
  }
  for (const [hour, reason] of [...hours].sort((a, b) => a[0] - b[0])) {
    if (signal?.aborted) return;
    await certifyHour(s, hour, reason);
  }
}

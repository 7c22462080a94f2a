// ops/s3/lifecycle.json is the bucket's lifecycle configuration for the archive's tiers
// (`aws s3api put-bucket-lifecycle-configuration --bucket B --lifecycle-configuration file://ops/s3/lifecycle.json`).
// It must match the seed's cold-storage table and the archiver's default tier prefixes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveArchiveOptions } from '../../src/archive/options';

const ROOT = join(__dirname, '..', '..', '..');

interface Rule {
  ID: string;
  Filter: { Prefix: string };
  Status: string;
  Transitions?: { Days: number; StorageClass: string }[];
  NoncurrentVersionExpiration?: { NoncurrentDays: number };
  AbortIncompleteMultipartUpload?: { DaysAfterInitiation: number };
}

// The seed's "S3 Cold Storage" table: raw/ Glacier after 30 days, processed/ IA after 90 days,
// aggregates/ Standard (frequently accessed: no transition). Glacier is its Instant Retrieval
// class, so kdp export, DuckDB and Athena still read raw/ without a restore (docs/archive.md).
const SEED = { raw: { days: 30, storageClass: 'GLACIER_IR' }, processed: { days: 90, storageClass: 'STANDARD_IA' }, aggregates: undefined };
const STORAGE_CLASSES = new Set(['STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'GLACIER_IR', 'DEEP_ARCHIVE']);

test('the lifecycle policy moves each tier as the seed table says, under the archiver default prefixes', () => {
  const policy = JSON.parse(readFileSync(join(ROOT, 'ops', 's3', 'lifecycle.json'), 'utf8')) as { Rules: Rule[] };
  const ids = new Set<string>();
  for (const r of policy.Rules) {
    assert.ok(r.ID && r.ID.length <= 255 && !ids.has(r.ID), `rule id ${r.ID} is unique`);
    ids.add(r.ID);
    assert.equal(r.Status, 'Enabled');
    assert.ok(r.Transitions || r.AbortIncompleteMultipartUpload || r.NoncurrentVersionExpiration, `${r.ID} has an action`);
    assert.ok(!('Expiration' in r), `${r.ID}: no tier expires (processed/ is derived from production, which does not keep history forever)`);
    for (const t of r.Transitions ?? [])
      assert.ok(Number.isInteger(t.Days) && t.Days > 0 && STORAGE_CLASSES.has(t.StorageClass), `${r.ID}: ${JSON.stringify(t)}`);
  }
  const defaults = resolveArchiveOptions({ production: { url: 'postgres://x/y' } });
  const prefixes = { raw: defaults.store.prefix, processed: defaults.processed.prefix, aggregates: defaults.aggregates.prefix };
  for (const [tier, want] of Object.entries(SEED)) {
    const prefix = `${prefixes[tier as keyof typeof prefixes]}/`;
    const moving = policy.Rules.filter((r) => r.Transitions && prefix.startsWith(r.Filter.Prefix));
    if (!want) {
      assert.equal(moving.length, 0, `${tier} stays in Standard`);
      assert.ok(
        policy.Rules.some((r) => r.Filter.Prefix === prefix),
        `${tier} has its own (hygiene) rule`,
      );
      continue;
    }
    assert.equal(moving.length, 1, `one transition rule covers ${prefix}`);
    assert.deepEqual(moving[0]!.Transitions, [{ Days: want.days, StorageClass: want.storageClass }]);
    assert.equal(moving[0]!.Filter.Prefix, prefix, 'the rule is scoped to the tier, not wider');
  }
});

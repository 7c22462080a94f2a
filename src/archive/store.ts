// The object stores behind one interface: a local directory (the default) and S3 or any
// S3-compatible store. A put is atomic: readers see the old object or the whole new one, never a
// half-written file. Every operation is retried with exponential backoff and jitter, a bounded
// number of times, then fails with KDP_ERR_ARCHIVE_STORE.
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { backoffDelayMs } from '../core/backoff';
import { KdpError, invariant } from '../core/errors';
import { failpoint } from '../core/failpoint';
import type { StoreOptions } from './options';

export interface ObjectStore {
  /** Where objects go, for logs (no secrets). */
  readonly location: string;
  /** Atomically stores the local file `file` under `key` (replacing any object there). */
  putFile(key: string, file: string, contentType: string): Promise<void>;
  putBytes(key: string, bytes: Buffer, contentType: string): Promise<void>;
  /** The object's bytes, or undefined when there is no such object. */
  get(key: string): Promise<Buffer | undefined>;
  /** Keys under a prefix, sorted. */
  list(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** Called before each retry (metrics, logs). */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Runs op up to maxAttempts times; equal-jitter exponential backoff between attempts (never an immediate retry against S3). */
export async function withRetry<T>(what: string, policy: RetryPolicy, op: () => Promise<T>): Promise<T> {
  let lastErr: unknown;
  for (let attempt = 1; attempt <= policy.maxAttempts; attempt++) {
    try {
      return await op();
    } catch (err) {
      lastErr = err;
      if (attempt === policy.maxAttempts) break;
      const delayMs = backoffDelayMs(attempt - 1, { initialMs: policy.retryBaseMs, maxMs: policy.retryMaxMs, jitter: 'equal' });
      policy.onRetry?.(err, attempt, delayMs);
      await sleep(delayMs);
    }
  }
  throw new KdpError(
    'KDP_ERR_ARCHIVE_STORE',
    `${what} failed after ${policy.maxAttempts} attempts: ${(lastErr as Error)?.message ?? String(lastErr)}`,
    { attempts: policy.maxAttempts },
    lastErr,
  );
}

function checkKey(key: string): void {
  invariant(key.length > 0 && !key.startsWith('/') && !key.split('/').includes('..'), `bad object key ${key}`);
}

/** Staging directory inside the store root (same filesystem, so rename is atomic). */
const STAGING_DIR = '.kdp-staging';

export class LocalStore implements ObjectStore {
  readonly location: string;
  private seq = 0;
  constructor(
    private readonly root: string,
    private readonly policy: RetryPolicy,
  ) {
    this.location = `file://${root}`;
  }

  /** Removes temp files a killed process left in the staging directory. */
  async init(): Promise<void> {
    await rm(join(this.root, STAGING_DIR), { recursive: true, force: true });
    await mkdir(join(this.root, STAGING_DIR), { recursive: true });
  }

  putFile(key: string, file: string): Promise<void> {
    checkKey(key);
    return withRetry(`local put ${key}`, this.policy, () => this.install(key, (tmp) => copyFile(file, tmp)));
  }

  putBytes(key: string, bytes: Buffer): Promise<void> {
    checkKey(key);
    return withRetry(`local put ${key}`, this.policy, () =>
      this.install(key, async (tmp) => {
        const fh = await open(tmp, 'w');
        try {
          await fh.writeFile(bytes);
        } finally {
          await fh.close();
        }
      }),
    );
  }

  /** Write to staging, fsync, rename into place, fsync the directory: all or nothing. */
  private async install(key: string, write: (tmp: string) => Promise<void>): Promise<void> {
    const target = join(this.root, ...key.split('/'));
    const tmp = join(this.root, STAGING_DIR, `${process.pid}-${++this.seq}.tmp`);
    await mkdir(join(this.root, STAGING_DIR), { recursive: true });
    await mkdir(dirname(target), { recursive: true });
    try {
      await write(tmp);
      await fsyncPath(tmp);
      failpoint('archive.before_rename');
      await rename(tmp, target);
      await fsyncPath(dirname(target));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    checkKey(key);
    return withRetry(`local get ${key}`, this.policy, async () => {
      try {
        return await readFile(join(this.root, ...key.split('/')));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    });
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    await walk(this.root, this.root, out);
    return out.filter((k) => k.startsWith(prefix)).sort();
  }

  async close(): Promise<void> {}
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function walk(root: string, dir: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) {
    if (e.name === STAGING_DIR) continue;
    const path = join(dir, e.name);
    if (e.isDirectory()) await walk(root, path, out);
    else out.push(relative(root, path).split(sep).join('/'));
  }
}

/** A single PutObject per file: S3 makes an object visible only once it is complete. */
const SINGLE_PUT_BYTES_MAX = 5 * 1024 ** 3;

export class S3Store implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;
  constructor(
    opts: StoreOptions,
    private readonly bucket: string,
    private readonly policy: RetryPolicy,
  ) {
    this.location = `s3://${bucket}${opts.endpoint ? ` at ${opts.endpoint}` : ''}`;
    const config: S3ClientConfig = {
      region: opts.region,
      forcePathStyle: opts.forcePathStyle,
      // Our own bounded retry loop is the one policy; the SDK's would multiply it.
      maxAttempts: 1,
      // Plain PUT bodies (no aws-chunked trailers): understood by every S3-compatible server.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { requestTimeout: opts.requestTimeoutMs, connectionTimeout: Math.min(opts.requestTimeoutMs, 10_000) },
    };
    if (opts.endpoint) config.endpoint = opts.endpoint;
    if (opts.accessKeyId && opts.secretAccessKey) {
      config.credentials = { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey };
    }
    this.client = new S3Client(config);
  }

  async putFile(key: string, file: string, contentType: string): Promise<void> {
    checkKey(key);
    const { size } = await stat(file);
    if (size > SINGLE_PUT_BYTES_MAX) {
      throw new KdpError('KDP_ERR_ARCHIVE_STORE', `${file} is ${size} bytes, above the single-PUT limit; lower the partition size`);
    }
    await withRetry(`s3 put ${key}`, this.policy, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: createReadStream(file), ContentLength: size, ContentType: contentType })),
    );
  }

  async putBytes(key: string, bytes: Buffer, contentType: string): Promise<void> {
    checkKey(key);
    await withRetry(`s3 put ${key}`, this.policy, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.length, ContentType: contentType })),
    );
  }

  async get(key: string): Promise<Buffer | undefined> {
    checkKey(key);
    return withRetry(`s3 get ${key}`, this.policy, async () => {
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
        invariant(r.Body !== undefined, 'GetObject returned no body');
        return Buffer.from(await r.Body.transformToByteArray());
      } catch (err) {
        const name = (err as { name?: string }).name;
        if (name === 'NoSuchKey' || name === 'NotFound') return undefined;
        throw err;
      }
    });
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await withRetry(`s3 list ${prefix}`, this.policy, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })),
      );
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

export async function openStore(opts: StoreOptions, onRetry?: RetryPolicy['onRetry']): Promise<ObjectStore> {
  const policy: RetryPolicy = { maxAttempts: opts.maxAttempts, retryBaseMs: opts.retryBaseMs, retryMaxMs: opts.retryMaxMs, onRetry };
  if (opts.kind === 's3') {
    invariant(opts.bucket !== undefined, 'store.bucket is required for s3 (checked by the options)');
    return new S3Store(opts, opts.bucket, policy);
  }
  const store = new LocalStore(opts.dir, policy);
  await withRetry(`local store init ${opts.dir}`, policy, () => store.init());
  return store;
}

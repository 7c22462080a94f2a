// A WebSocket handshake the exchange refuses with an HTTP status (Kalshi answers 401 for a revoked or
// wrong API key): the connection manager counts it once per attempt as http_<status> (not also as
// `connect`), logs it with the status, and keeps retrying with its backoff.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { createLogger } from '../../src/core/log';
import { ConnectionManager } from '../../src/gatherer/connections';
import { RingRouter } from '../../src/ingest/router';
import { FrameCodec } from '../../src/ingest/frame';
import { createRingBuffer, RingProducer } from '../../src/ingest/ring';
import { managerOptions, waitFor } from '../harness/gatherer';

const servers: Server[] = [];
after(() => {
  for (const s of servers) {
    s.close();
    s.closeAllConnections();
  }
});

/**
 * An HTTP server that answers the first `refusedMax` WebSocket upgrades with 401 and leaves the
 * later ones unanswered (still connecting when the test stops the manager), counting the attempts.
 */
async function refusingServer(refusedMax: number): Promise<{ url: string; attempts: () => number }> {
  let attempts = 0;
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (_req, socket) => {
    attempts++;
    if (attempts > refusedMax) return; // closed by server.close() / the client's stop
    socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, attempts: () => attempts };
}

test('a handshake refused with 401 is counted once per attempt as http_401, logged with its status, and retried; stopping mid-handshake counts nothing', async () => {
  const { url, attempts } = await refusingServer(3);
  const codec = new FrameCodec(4096);
  const router = new RingRouter([new RingProducer(createRingBuffer({ ringBytes: 16 * 1024, frameBytesMax: 4096 }))], codec, {
    onRingFull: 'pause',
    drainPollMs: 2,
    noticeBacklogMax: 64,
    heldBytesMax: 8192,
  });
  const errors: string[] = [];
  const lines: { msg: string; status?: number }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const manager = new ConnectionManager(
    managerOptions(url, { backoffInitialMs: 20, backoffMaxMs: 50 }),
    router,
    { disconnected: () => undefined, resubscribed: () => undefined, error: (type) => errors.push(type), reconnect: () => undefined },
    () => ({}),
    createLogger('test', { level: 'warn', destination }),
  );
  manager.start();
  try {
    // The fourth attempt is left hanging: stop() closes a socket that is still connecting.
    await waitFor('three refused attempts counted, a fourth connecting', () => errors.length >= 3 && attempts() >= 4, 30_000);
  } finally {
    await manager.stop();
  }
  assert.ok(
    errors.every((t) => t === 'http_401'),
    `only http_401 counted: ${errors.join(',')}`,
  );
  assert.ok(errors.length <= attempts(), 'at most one count per attempt');
  const refused = lines.filter((l) => l.status === 401);
  assert.ok(refused.length >= 3 && refused[0]!.msg.includes('handshake refused'), JSON.stringify(lines.slice(0, 3)));
});

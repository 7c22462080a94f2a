// A full ring in front of a real WebSocket: the connection manager and the ring router against a
// server that writes faster than the consumer reads. Pause mode must hand every frame to the
// consumer exactly once and in order (issue 16: the frame that found the ring full, and every frame
// `ws` delivered after socket.pause(), used to vanish with no count); drop mode must account for
// every frame it drops in the ring-drop notices.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { createLogger } from '../../src/core/log';
import { ConnectionManager } from '../../src/gatherer/connections';
import { FrameCodec, FrameKind } from '../../src/ingest/frame';
import { createRingBuffer, RingConsumer, RingProducer } from '../../src/ingest/ring';
import { RingRouter } from '../../src/ingest/router';
import { managerOptions, waitFor } from '../harness/gatherer';

const FRAMES = 20_000;
const RING_BYTES = 16 * 1024;
const FRAME_BYTES_MAX = 4 * 1024;
// ws keeps delivering the chunk it had read (up to 64 KiB) after socket.pause(): the held bound
// must exceed that for pause mode to be lossless (the gatherer holds half a 32 MiB ring).
const HELD_BYTES_MAX = 256 * 1024;

const servers: WebSocketServer[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A server that writes FRAMES numbered messages (~150 bytes each) to every client at once. */
async function blastingServer(): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const pad = 'x'.repeat(120);
  wss.on('connection', (ws) => {
    for (let n = 1; n <= FRAMES; n++) ws.send(`{"type":"t","n":${n},"pad":"${pad}"}`);
  });
  return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
}

interface Received {
  readonly numbers: number[];
  readonly dropNotices: number[];
}

/** Reads the ring slowly (a few frames per tick), as a worker blocked on COPY would. */
function slowConsumer(consumer: RingConsumer, codec: FrameCodec, into: Received): NodeJS.Timeout {
  return setInterval(() => {
    for (let i = 0; i < 40; i++) {
      const bytes = consumer.read();
      if (bytes === undefined) return;
      const f = codec.decode(bytes);
      if (f.kind === FrameKind.data) into.numbers.push(JSON.parse(Buffer.from(f.payload).toString('utf8')).n);
      else if (f.kind === FrameKind.ringDrop) into.dropNotices.push(f.arg);
    }
  }, 2);
}

async function runAgainstFullRing(onRingFull: 'pause' | 'drop'): Promise<{ received: Received; router: RingRouter }> {
  const url = await blastingServer();
  const sab = createRingBuffer({ ringBytes: RING_BYTES, frameBytesMax: FRAME_BYTES_MAX });
  const codec = new FrameCodec(FRAME_BYTES_MAX);
  const router = new RingRouter([new RingProducer(sab)], codec, {
    onRingFull,
    drainPollMs: 2,
    noticeBacklogMax: 64,
    heldBytesMax: HELD_BYTES_MAX,
  });
  const manager = new ConnectionManager(
    managerOptions(url),
    router,
    { disconnected: () => undefined, resubscribed: () => undefined, error: () => undefined, reconnect: () => undefined },
    () => ({}),
    createLogger('test', { level: 'silent' }),
  );
  const received: Received = { numbers: [], dropNotices: [] };
  const timer = slowConsumer(new RingConsumer(sab), codec, received);
  manager.start();
  try {
    const accounted = (): number => received.numbers.length + received.dropNotices.reduce((a, b) => a + b, 0);
    await waitFor(
      `all ${FRAMES} frames delivered or accounted for as drops`,
      () => {
        router.flushNotices(); // the gatherer's periodic flush (src/gatherer/service.ts)
        return accounted() >= FRAMES;
      },
      120_000,
      20,
    );
  } finally {
    await manager.stop();
    clearInterval(timer);
  }
  return { received, router };
}

test('pause mode: a ring kept full by a fast WebSocket delivers every frame to the consumer exactly once and in order', async () => {
  const { received, router } = await runAgainstFullRing('pause');
  assert.ok(router.stats.ringFullEvents > 0, 'the ring was full at least once');
  assert.ok(router.stats.framesHeld > 0, 'frames that found the ring full were held');
  assert.equal(router.stats.framesDropped, 0, 'nothing dropped');
  assert.deepEqual(received.dropNotices, []);
  assert.equal(received.numbers.length, FRAMES);
  for (let i = 0; i < FRAMES; i++)
    if (received.numbers[i] !== i + 1) assert.fail(`frame ${i + 1} out of order or missing: got ${received.numbers[i]} at position ${i}`);
});

test('drop mode: every frame is either delivered in order or counted in a ring-drop notice', async () => {
  const { received, router } = await runAgainstFullRing('drop');
  assert.ok(router.stats.framesDropped > 0, 'the ring overflowed');
  const noticed = received.dropNotices.reduce((a, b) => a + b, 0);
  assert.equal(received.numbers.length + noticed, FRAMES, 'delivered + noticed drops = sent');
  assert.equal(noticed, router.stats.framesDropped);
  for (let i = 1; i < received.numbers.length; i++) assert.ok(received.numbers[i]! > received.numbers[i - 1]!, 'delivered frames keep their order');
});

test('a text message that is not UTF-8 keeps its connection: it reaches the ring untouched and the decode rejects it as KDP_ERR_MSG_JSON', async () => {
  // The ws client skips its UTF-8 check (skipUTF8Validation, off the ingest thread); with the check
  // it would close the connection (1007) and lose every message after the bad one.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const bad = Uint8Array.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0xff, 0x7d]); // {"n":<0xff>}
  wss.on('connection', (ws) => {
    ws.send('{"n":1}');
    ws.send(bad, { binary: false });
    ws.send('{"n":2}');
  });
  const sab = createRingBuffer({ ringBytes: RING_BYTES, frameBytesMax: FRAME_BYTES_MAX });
  const codec = new FrameCodec(FRAME_BYTES_MAX);
  const router = new RingRouter([new RingProducer(sab)], codec, { onRingFull: 'pause', drainPollMs: 2, noticeBacklogMax: 64, heldBytesMax: HELD_BYTES_MAX });
  const events = { error: [] as string[], disconnected: 0 };
  const manager = new ConnectionManager(
    managerOptions(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`),
    router,
    { disconnected: () => events.disconnected++, resubscribed: () => undefined, error: (e) => events.error.push(e), reconnect: () => undefined },
    () => ({}),
    createLogger('test', { level: 'silent' }),
  );
  const consumer = new RingConsumer(sab);
  const seen: string[] = [];
  manager.start();
  try {
    await waitFor(
      'three messages on the ring',
      () => {
        for (let bytes = consumer.read(); bytes !== undefined; bytes = consumer.read()) {
          try {
            const f = codec.decode(bytes);
            seen.push(f.kind === FrameKind.data ? Buffer.from(f.payload).toString() : `kind ${f.kind}`);
          } catch (err) {
            seen.push((err as { code?: string }).code ?? String(err));
            // The frame itself is sound: the message bytes are exactly what the server sent.
            assert.deepEqual(Uint8Array.from(bytes.subarray(bytes.length - bad.length)), bad);
          }
        }
        return seen.filter((s) => !s.startsWith('kind')).length >= 3;
      },
      30_000,
      10,
    );
  } finally {
    await manager.stop();
  }
  assert.deepEqual(
    seen.filter((s) => !s.startsWith('kind')),
    ['{"n":1}', 'KDP_ERR_MSG_JSON', '{"n":2}'],
  );
  assert.deepEqual(seen.filter((s) => s.startsWith('kind')).slice(0, 1), [`kind ${FrameKind.connectionOpened}`]);
  assert.ok(!seen.includes(`kind ${FrameKind.connectionClosed}`), 'the connection stayed up');
  assert.equal(events.disconnected, 0);
});

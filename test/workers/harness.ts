// A FrameProcessor wired to capturing sinks, fed through the real bus frame codec.
import { FrameCodec, FrameKind } from '../../src/ingest/frame';
import type { ErrorCode } from '../../src/core/errors';
import type { TimeSeriesTableName } from '../../src/schema/tables';
import { FrameProcessor, type ControlEvent, type GapEvent } from '../../src/workers/processor';

export class Capture {
  readonly rows: { table: TimeSeriesTableName; line: string }[] = [];
  readonly controls: ControlEvent[] = [];
  readonly gaps: GapEvent[] = [];
  readonly rejects: { code: ErrorCode; sample: string }[] = [];
  readonly lifecycles: string[] = [];
  /** append returns false once this many rows are held (simulated writer high-water mark). */
  highWater = Infinity;
  readonly processor: FrameProcessor;
  readonly codec: FrameCodec;

  constructor(options: Record<string, unknown> = {}) {
    this.codec = new FrameCodec(typeof options.frameBytesMax === 'number' ? options.frameBytesMax : 1 << 20);
    this.processor = new FrameProcessor(
      { gathererId: 'g1', ...options },
      {
        rows: { append: (table, line) => (this.rows.push({ table, line }), this.rows.length < this.highWater) },
        control: (e) => this.controls.push(e),
        gap: (e) => this.gaps.push(e),
        reject: (code, sample) => this.rejects.push({ code, sample }),
        lifecycle: (channel) => this.lifecycles.push(channel),
      },
    );
  }

  /** Feeds one WebSocket message (object -> JSON, string or bytes as-is) as a data frame. */
  feed(message: unknown, connId = 1, receivedUs = 1_779_946_510_000_000): boolean {
    const payload = message instanceof Uint8Array ? message : Buffer.from(typeof message === 'string' ? message : JSON.stringify(message));
    return this.processor.processBytes(this.codec.encode(FrameKind.data, connId, receivedUs, payload));
  }

  control(kind: FrameKind, connId: number, detail: unknown = null, arg = 0, receivedUs = 1_779_946_510_000_000): boolean {
    const payload = detail === null ? new Uint8Array(0) : Buffer.from(JSON.stringify(detail));
    return this.processor.processBytes(this.codec.encode(kind, connId, receivedUs, payload, arg));
  }

  lines(table: TimeSeriesTableName): string[] {
    return this.rows.filter((r) => r.table === table).map((r) => r.line);
  }
}

/** Reference FNV-1a 64 with BigInt over Node's UTF-8 encoding, as a signed decimal. */
export function referenceFnv(text: string): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return BigInt.asIntN(64, h).toString();
}

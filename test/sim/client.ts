// A plain `ws` test client for the simulator (not the gatherer): records every frame and ping.
import WebSocket from 'ws';

export interface Frame {
  raw: string;
  json: Record<string, any> | null;
}

export class TestClient {
  readonly frames: Frame[] = [];
  readonly pings: string[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  private nextId = 1;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const raw = data.toString();
      let json: Record<string, any> | null = null;
      try {
        json = JSON.parse(raw);
      } catch {
        json = null;
      }
      this.frames.push({ raw, json });
      this.wake();
    });
    ws.on('ping', (d) => {
      this.pings.push(d.toString());
      this.wake();
    });
    ws.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(url: string, headers: Record<string, string> = {}): Promise<TestClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false, headers });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new TestClient(ws)));
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(cmd: string, params?: Record<string, unknown>): number {
    const id = this.nextId++;
    this.ws.send(JSON.stringify(params === undefined ? { id, cmd } : { id, cmd, params }));
    return id;
  }
  sendRaw(text: string): void {
    this.ws.send(text);
  }

  /** Waits until pred holds over the frames seen so far (bounded wait). */
  async until(pred: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for frames');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  byId(id: number): Array<Record<string, any>> {
    return this.frames.flatMap((f) => (f.json && f.json.id === id ? [f.json] : []));
  }
  async reply(id: number, count = 1): Promise<Array<Record<string, any>>> {
    await this.until(() => this.byId(id).length >= count);
    return this.byId(id);
  }
  ofType(type: string): Array<Record<string, any>> {
    return this.frames.flatMap((f) => (f.json && f.json.type === type ? [f.json] : []));
  }
  close(): void {
    this.ws.terminate();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

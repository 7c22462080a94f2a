// Time as the REST control plane sees it: wall-clock milliseconds, abortable sleeps and one-shot
// timers. Injected so tests can drive open/close timers, backoff and the token bucket with a
// manual clock instead of waiting (tests assert counts and order, never durations).
import { KdpError } from '../core/errors';

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Resolves after `ms`; rejects with KDP_ERR_SHUTDOWN when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Calls `fn` once after `ms`. The timer never keeps the process alive on its own. */
  setTimer(fn: () => void, ms: number): TimerHandle;
}

// setTimeout takes at most 2^31-1 ms; longer waits are re-armed by the caller.
export const MAX_TIMER_MS = 2_147_483_647;

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(shutdownError());
      const onAbort = (): void => {
        clearTimeout(t);
        reject(shutdownError());
      };
      const t = setTimeout(
        () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        Math.min(Math.max(0, ms), MAX_TIMER_MS),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

export function shutdownError(): KdpError {
  return new KdpError('KDP_ERR_SHUTDOWN', 'operation abandoned: stopping');
}

/**
 * A clock whose time moves only when told: `sleep` advances time by the requested amount at
 * once (so backoff and rate-limit waits are recorded, not waited), `advance` moves time and
 * fires due timers in due-time order. For tests and deterministic simulations.
 */
export class ManualClock implements Clock {
  private now: number;
  private timers: { due: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  /** Every sleep requested, in order (ms). */
  readonly sleeps: number[] = [];

  constructor(startMs: number) {
    this.now = startMs;
  }

  nowMs(): number {
    return this.now;
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw shutdownError();
    this.sleeps.push(ms);
    this.advance(Math.max(0, ms));
    await Promise.resolve();
    if (signal?.aborted) throw shutdownError();
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.push({ due: this.now + Math.max(0, ms), fn, id });
    return { cancel: () => (this.timers = this.timers.filter((t) => t.id !== id)) };
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      this.timers.sort((a, b) => a.due - b.due || a.id - b.id);
      const next = this.timers[0];
      if (!next || next.due > target) break;
      this.timers.shift();
      this.now = Math.max(this.now, next.due);
      next.fn();
    }
    this.now = target;
  }

  /** Timers currently armed (tests check the registry keeps this bounded). */
  pendingTimers(): number {
    return this.timers.length;
  }
}

// Options of the frame processor, validated once into a resolved object.
import { resolveOptions, type Resolved, type Spec } from '../config/validate';

export const PROCESSOR_SPEC = {
  gathererId: { kind: 'string', doc: 'this gatherer\'s id, written to every row', pattern: /^[A-Za-z0-9_.-]{1,64}$/ },
  frameBytesMax: { kind: 'int', doc: 'largest bus frame accepted (bytes)', default: 1 << 20, min: 1024, max: 1 << 28 },
  recentTradeIdsMax: { kind: 'int', doc: 'trade ids remembered to drop duplicate trade frames', default: 100_000, min: 1, max: 10_000_000 },
  marketsTrackedMax: { kind: 'int', doc: 'markets with occurrence state kept per worker', default: 200_000, min: 1, max: 10_000_000 },
  sidsPerConnectionMax: { kind: 'int', doc: 'subscriptions tracked per connection', default: 4096, min: 1, max: 1_000_000 },
  marketsPerSidMax: { kind: 'int', doc: 'markets tracked per subscription', default: 100_000, min: 1, max: 10_000_000 },
  snapshotLevelsMax: { kind: 'int', doc: 'price levels accepted per snapshot side', default: 20_000, min: 1, max: 1_000_000 },
  payloadDepthMax: { kind: 'int', doc: 'nesting accepted in a lifecycle payload', default: 16, min: 1, max: 256 },
  payloadNodesMax: { kind: 'int', doc: 'JSON values accepted in a lifecycle payload', default: 10_000, min: 1, max: 1_000_000 },
  rejectSamplesMax: { kind: 'int', doc: 'rejected messages kept for diagnosis', default: 32, min: 0, max: 10_000 },
  rejectSampleCharsMax: { kind: 'int', doc: 'characters kept of each rejected message', default: 512, min: 16, max: 65_536 },
} as const satisfies Spec;

export type ProcessorOptions = Resolved<typeof PROCESSOR_SPEC>;

export function resolveProcessorOptions(raw: unknown): ProcessorOptions {
  return resolveOptions(PROCESSOR_SPEC, raw, 'processor');
}

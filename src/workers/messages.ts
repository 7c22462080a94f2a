// The WebSocket message parsers live in the Kalshi wire module (src/kalshi/messages.ts); this
// re-export keeps the worker's imports stable.
export * from '../kalshi/messages';

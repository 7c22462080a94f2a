// Kalshi request signing: RSA-PSS over SHA-256, MGF1(SHA-256), salt length 32, of
// `timestampMs + METHOD + path`. The simulator verifies; capture and tests sign.
import { constants, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

export const WS_PATH = '/trade-api/ws/v2';
export const REST_PREFIX = '/trade-api/v2';

export interface SignedHeaders {
  'KALSHI-ACCESS-KEY': string;
  'KALSHI-ACCESS-TIMESTAMP': string;
  'KALSHI-ACCESS-SIGNATURE': string;
}

/** Headers for one request; `privateKeyPem` is never logged or echoed. */
export function signRequest(keyId: string, privateKeyPem: string | KeyObject, method: string, path: string, nowMs = Date.now()): SignedHeaders {
  const ts = String(nowMs);
  const key = typeof privateKeyPem === 'string' ? createPrivateKey(privateKeyPem) : privateKeyPem;
  const signature = sign('sha256', Buffer.from(ts + method + path), {
    key,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: 32,
  }).toString('base64');
  return { 'KALSHI-ACCESS-KEY': keyId, 'KALSHI-ACCESS-TIMESTAMP': ts, 'KALSHI-ACCESS-SIGNATURE': signature };
}

export function verifySignature(publicKey: KeyObject, ts: string, method: string, path: string, signatureB64: string): boolean {
  try {
    return verify(
      'sha256',
      Buffer.from(ts + method + path),
      {
        key: publicKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      },
      Buffer.from(signatureB64, 'base64'),
    );
  } catch {
    return false;
  }
}

export function loadPublicKeys(keys: Readonly<Record<string, string>>): Map<string, KeyObject> {
  const out = new Map<string, KeyObject>();
  for (const [id, pem] of Object.entries(keys)) out.set(id, createPublicKey(pem));
  return out;
}

export type AuthVerdict = { ok: true; keyId: string | null } | { ok: false; why: string };

/**
 * Checks the handshake headers (lower-case names). With no keys configured, a connection is
 * accepted unsigned unless `required`; with keys, a present signature must verify.
 */
export function checkHandshake(headers: (name: string) => string, keys: Map<string, KeyObject>, required: boolean): AuthVerdict {
  const keyId = headers('kalshi-access-key');
  const ts = headers('kalshi-access-timestamp');
  const sig = headers('kalshi-access-signature');
  if (!keyId && !ts && !sig) return required ? { ok: false, why: 'missing KALSHI-ACCESS-* headers' } : { ok: true, keyId: null };
  if (!keyId || !ts || !sig) return { ok: false, why: 'incomplete KALSHI-ACCESS-* headers' };
  if (!/^\d{10,16}$/.test(ts)) return { ok: false, why: 'bad KALSHI-ACCESS-TIMESTAMP' };
  if (keys.size === 0) return required ? { ok: false, why: 'no public keys configured' } : { ok: true, keyId };
  const key = keys.get(keyId);
  if (!key) return { ok: false, why: 'unknown key id' };
  return verifySignature(key, ts, 'GET', WS_PATH, sig) ? { ok: true, keyId } : { ok: false, why: 'bad signature' };
}

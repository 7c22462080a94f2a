// Kalshi API request signing (RSA-PSS, SHA-256, MGF1(SHA-256), salt length 32) over
// `timestampMs + METHOD + path`, where path starts at /trade-api/... and excludes the query
// string and host. The private key is loaded once into a KeyObject held in a private field: it
// never appears in errors, logs (the signer has no enumerable key material) or metrics.
import { constants, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KdpError } from '../core/errors';

export const WS_SIGN_PATH = '/trade-api/ws/v2';

export interface KalshiAuthHeaders {
  readonly 'KALSHI-ACCESS-KEY': string;
  readonly 'KALSHI-ACCESS-TIMESTAMP': string;
  readonly 'KALSHI-ACCESS-SIGNATURE': string;
}

/** The path Kalshi signs: from a full URL or a path, without query string, fragment or host. */
export function signingPath(pathOrUrl: string): string {
  const path = /^[a-z][a-z0-9+.-]*:\/\//i.test(pathOrUrl) ? new URL(pathOrUrl).pathname : pathOrUrl;
  const cut = path.search(/[?#]/);
  return cut === -1 ? path : path.slice(0, cut);
}

export class KalshiSigner {
  readonly keyId: string;
  readonly #key: KeyObject;

  private constructor(keyId: string, key: KeyObject) {
    this.keyId = keyId;
    this.#key = key;
  }

  /** Parses a PEM private key (PKCS#1 or PKCS#8). Throws KDP_ERR_AUTH_KEY without key material. */
  static fromPem(keyId: string, pem: string | Buffer, source = 'inline PEM'): KalshiSigner {
    if (!keyId) throw new KdpError('KDP_ERR_AUTH_KEY', 'API key id is empty');
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch (err) {
      // The crypto error text is not echoed: some OpenSSL messages quote input fragments.
      const code = (err as { code?: string }).code ?? 'invalid key';
      throw new KdpError('KDP_ERR_AUTH_KEY', `cannot parse the API private key from ${source} (${code})`, { source });
    }
    if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') {
      throw new KdpError('KDP_ERR_AUTH_KEY', `the API private key from ${source} is not an RSA key`, { source });
    }
    return new KalshiSigner(keyId, key);
  }

  /** Reads the PEM file once. */
  static fromPemFile(keyId: string, path: string): KalshiSigner {
    let pem: Buffer;
    try {
      pem = readFileSync(path);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'read error';
      throw new KdpError('KDP_ERR_AUTH_KEY', `cannot read the API private key file ${path} (${code})`, { path });
    }
    try {
      return KalshiSigner.fromPem(keyId, pem, path);
    } finally {
      pem.fill(0);
    }
  }

  /** Base64 RSA-PSS signature of `timestampMs + method + path`. */
  signature(timestampMs: number, method: string, pathOrUrl: string): string {
    const message = `${timestampMs}${method.toUpperCase()}${signingPath(pathOrUrl)}`;
    try {
      return sign('sha256', Buffer.from(message, 'utf8'), {
        key: this.#key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      }).toString('base64');
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'sign error';
      throw new KdpError('KDP_ERR_AUTH_KEY', `signing failed (${code})`);
    }
  }

  /** Headers for one REST request. */
  headers(method: string, pathOrUrl: string, timestampMs: number = Date.now()): KalshiAuthHeaders {
    return {
      'KALSHI-ACCESS-KEY': this.keyId,
      'KALSHI-ACCESS-TIMESTAMP': String(timestampMs),
      'KALSHI-ACCESS-SIGNATURE': this.signature(timestampMs, method, pathOrUrl),
    };
  }

  /** Headers for the WebSocket upgrade: regenerate on every (re)connect. */
  wsHeaders(timestampMs: number = Date.now()): KalshiAuthHeaders {
    return this.headers('GET', WS_SIGN_PATH, timestampMs);
  }

  toJSON(): { keyId: string } {
    return { keyId: this.keyId };
  }
}

import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isKdpError } from '../../src/core/errors';
import { KalshiSigner, WS_SIGN_PATH, signingPath } from '../../src/gatherer/auth';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

function verifies(message: string, signatureB64: string): boolean {
  return verify(
    'sha256',
    Buffer.from(message),
    { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
    Buffer.from(signatureB64, 'base64'),
  );
}

test('a REST signature verifies as RSA-PSS SHA-256 salt 32 over ts + METHOD + path', () => {
  const signer = KalshiSigner.fromPem('key-1', PEM);
  const h = signer.headers('get', '/trade-api/v2/markets', 1_700_000_000_123);
  assert.equal(h['KALSHI-ACCESS-KEY'], 'key-1');
  assert.equal(h['KALSHI-ACCESS-TIMESTAMP'], '1700000000123');
  assert.match(h['KALSHI-ACCESS-SIGNATURE'], /^[A-Za-z0-9+/]+=*$/, 'standard base64');
  assert.ok(verifies('1700000000123GET/trade-api/v2/markets', h['KALSHI-ACCESS-SIGNATURE']));
  // PSS is randomised: two signatures of one message differ, both verify.
  const again = signer.signature(1_700_000_000_123, 'GET', '/trade-api/v2/markets');
  assert.notEqual(again, h['KALSHI-ACCESS-SIGNATURE']);
  assert.ok(verifies('1700000000123GET/trade-api/v2/markets', again));
  assert.ok(!verifies('1700000000124GET/trade-api/v2/markets', again), 'a different timestamp does not verify');
});

test('the signed path excludes query string, fragment and host', () => {
  assert.equal(signingPath('/trade-api/v2/markets?status=open&limit=5'), '/trade-api/v2/markets');
  assert.equal(signingPath('https://external-api.kalshi.com/trade-api/v2/markets/trades?ticker=X#f'), '/trade-api/v2/markets/trades');
  const signer = KalshiSigner.fromPem('k', PEM);
  const sig = signer.signature(5, 'GET', 'http://127.0.0.1:1234/trade-api/v2/markets/ABC/orderbook?depth=3');
  assert.ok(verifies('5GET/trade-api/v2/markets/ABC/orderbook', sig));
});

test('WebSocket upgrade headers sign GET /trade-api/ws/v2', () => {
  const h = KalshiSigner.fromPem('k', PEM).wsHeaders(42);
  assert.equal(WS_SIGN_PATH, '/trade-api/ws/v2');
  assert.ok(verifies('42GET/trade-api/ws/v2', h['KALSHI-ACCESS-SIGNATURE']));
});

test('key loading fails with KDP_ERR_AUTH_KEY and never echoes key material', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kdp-auth-'));
  const good = join(dir, 'good.pem');
  writeFileSync(good, PEM);
  assert.ok(verifies('1GET/x', KalshiSigner.fromPemFile('k', good).signature(1, 'GET', '/x')));
  assert.throws(
    () => KalshiSigner.fromPemFile('k', join(dir, 'missing.pem')),
    (e) => isKdpError(e, 'KDP_ERR_AUTH_KEY') && /ENOENT/.test(e.message),
  );
  const lines = PEM.split('\n');
  const broken = [...lines.slice(0, 6), ...lines.slice(-2)].join('\n'); // truncated DER body
  const bad = join(dir, 'bad.pem');
  writeFileSync(bad, broken);
  assert.throws(
    () => KalshiSigner.fromPemFile('k', bad),
    (e) => isKdpError(e, 'KDP_ERR_AUTH_KEY') && !e.message.includes('MII') && !JSON.stringify(e.details).includes('MII'),
  );
  const { privateKey: ec } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  assert.throws(
    () => KalshiSigner.fromPem('k', ec.export({ type: 'pkcs8', format: 'pem' })),
    (e) => isKdpError(e, 'KDP_ERR_AUTH_KEY'),
  );
  // Serialising the signer (e.g. in a log line) shows the key id only.
  assert.deepEqual(JSON.parse(JSON.stringify(KalshiSigner.fromPem('k', PEM))), { keyId: 'k' });
});

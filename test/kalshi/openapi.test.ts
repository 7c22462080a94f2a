// The REST client's requests against Kalshi's published OpenAPI description (the excerpt in
// test/kalshi/fixtures/openapi-excerpt.yaml): the real RestClient calls every endpoint the way the
// registry, the poller and the trade backfill call it, against a recording server; each request
// it actually put on the wire is validated against the operation it targets: path template, query
// parameter names, scalar vs array (form, explode) encoding, integer / boolean / enum values and
// bounds, required parameters, and auth (an operation listing `security` must get signed
// requests; the signature covers the path without the query). The wire model in src/kalshi
// (REST_ROUTES) is checked against the same operations.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { resolveOptions } from '../../src/config/validate';
import { KalshiSigner } from '../../src/gatherer/auth';
import { REST_CLIENT_SPEC } from '../../src/gatherer/options';
import { RestClient } from '../../src/gatherer/rest';
import { REST_ROUTES, type RouteSpec } from '../../src/kalshi/protocol';
import { KalshiTestServer, market } from '../gatherer/fixtures/kalshi-test-server';

interface Schema {
  type?: string;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  items?: Schema;
}
interface Param {
  name: string;
  in: 'query' | 'path' | 'header';
  required?: boolean;
  schema: Schema;
  style?: string;
  explode?: boolean;
}
interface Operation {
  operationId: string;
  parameters?: (Param | { $ref: string })[];
  security?: Record<string, unknown>[];
}
interface Spec {
  paths: Record<string, { get?: Operation }>;
  components: { parameters: Record<string, Param>; securitySchemes: Record<string, { name: string }> };
}

const SPEC = parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'kalshi', 'fixtures', 'openapi-excerpt.yaml'), 'utf8')) as Spec;

function operation(path: string): Operation {
  const op = SPEC.paths[path]?.get;
  assert.ok(op, `the OpenAPI excerpt has GET ${path}`);
  return op;
}

function params(op: Operation): Param[] {
  return (op.parameters ?? []).map((p) => {
    if (!('$ref' in p)) return p;
    const name = p.$ref.replace('#/components/parameters/', '');
    const resolved = SPEC.components.parameters[name];
    assert.ok(resolved, `parameter ${p.$ref} is in the excerpt`);
    return resolved;
  });
}

/** OpenAPI 3 query defaults: style form, explode true. */
const isExplodedFormArray = (p: Param): boolean => p.schema.type === 'array' && (p.style ?? 'form') === 'form' && (p.explode ?? true);

/** The spec path template a request path matches (`/markets/X/orderbook` -> `/markets/{ticker}/orderbook`). */
function templateOf(path: string): { template: string; pathParams: Record<string, string> } {
  for (const template of Object.keys(SPEC.paths)) {
    const names: string[] = [];
    const re = new RegExp(`^${template.replace(/\{(\w+)\}/g, (_, n: string) => (names.push(n), '([^/]+)'))}$`);
    const m = re.exec(path);
    if (m) return { template, pathParams: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)])) };
  }
  return assert.fail(`no GET operation in the OpenAPI excerpt matches ${path}`);
}

/** Every way a request can disagree with its operation, as readable strings (empty = conforms). */
function violations(path: string, query: URLSearchParams, headers: Record<string, unknown>): string[] {
  const out: string[] = [];
  const { template, pathParams } = templateOf(path);
  const op = operation(template);
  const declared = params(op);
  for (const p of declared.filter((x) => x.in === 'path')) if (!pathParams[p.name]) out.push(`${template}: path parameter ${p.name} is empty`);
  const keys = new Set(query.keys());
  for (const key of keys) {
    const p = declared.find((x) => x.in === 'query' && x.name === key);
    if (!p) {
      out.push(`${template}: query parameter ${key} is not declared`);
      continue;
    }
    const values = query.getAll(key);
    if (p.schema.type === 'array') {
      if (!isExplodedFormArray(p)) out.push(`${template}: ${key} is an array the client cannot encode (style ${p.style}, explode ${p.explode})`);
      if (p.schema.minItems !== undefined && values.length < p.schema.minItems)
        out.push(`${template}: ${key} has ${values.length} < ${p.schema.minItems} items`);
      if (p.schema.maxItems !== undefined && values.length > p.schema.maxItems)
        out.push(`${template}: ${key} has ${values.length} > ${p.schema.maxItems} items`);
      // Exploded: one item per key. A comma inside a value is a joined list (no ticker has a comma).
      for (const item of values)
        if (item.includes(',')) out.push(`${template}: ${key}=${item} joins items with commas (form, explode expects ${key}=A&${key}=B)`);
      continue;
    }
    if (values.length !== 1) out.push(`${template}: scalar ${key} sent ${values.length} times (${values.join(' | ')})`);
    const v = values[0]!;
    const s = p.schema;
    if (s.type === 'integer') {
      if (!/^-?\d+$/.test(v)) out.push(`${template}: ${key}=${v} is not an integer`);
      else if ((s.minimum !== undefined && Number(v) < s.minimum) || (s.maximum !== undefined && Number(v) > s.maximum))
        out.push(`${template}: ${key}=${v} is outside [${s.minimum}, ${s.maximum}]`);
    }
    if (s.type === 'boolean' && v !== 'true' && v !== 'false') out.push(`${template}: ${key}=${v} is not a boolean`);
    if (s.enum && !s.enum.includes(v)) out.push(`${template}: ${key}=${v} is not one of ${s.enum.join(', ')}`);
  }
  for (const p of declared) if (p.in === 'query' && p.required && !keys.has(p.name)) out.push(`${template}: required ${p.name} missing`);
  for (const requirement of op.security ?? []) {
    for (const scheme of Object.keys(requirement)) {
      const header = SPEC.components.securitySchemes[scheme]!.name.toLowerCase();
      if (typeof headers[header] !== 'string') out.push(`${template}: ${op.operationId} requires ${header}`);
    }
  }
  return out;
}

let server: KalshiTestServer;
let base: string;
const BASE_PATH = '/trade-api/v2';
const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });

before(async () => {
  server = new KalshiTestServer();
  base = await server.start();
  server.markets.set('KXGOLDH-26AUG2711-T4615.99', market('KXGOLDH-26AUG2711-T4615.99', 'active'));
  server.orderbooks.set('KXGOLDH-26AUG2711-T4615.99', { yes_dollars: [['0.0100', '1410.00']], no_dollars: [] });
  server.orderbooks.set('KXIPL-26-RCB', { yes_dollars: [], no_dollars: [] });
});
after(() => server?.close());

function client(signed: boolean): RestClient {
  const opts = resolveOptions(REST_CLIENT_SPEC, { restBaseUrl: base, restTokensPerSec: 1e6, restBurstTokens: 1e6, signRestRequests: signed });
  return new RestClient(opts, signed ? { signer: KalshiSigner.fromPem('test-key-id', keys.privateKey.export({ type: 'pkcs8', format: 'pem' })) } : {});
}

/** Every request shape the gatherer makes (src/gatherer/registry.ts, poller.ts, backfill.ts), plus each optional field once. */
async function callEveryEndpoint(rest: RestClient): Promise<void> {
  const nowS = 1_787_838_990;
  await rest.getSeries({});
  await rest.getSeries({ category: 'Crypto' });
  await rest.getEvents({ status: 'open', limit: 200 });
  await rest.getEvents({ status: 'unopened', limit: 200, series_ticker: 'KXGOLDH', cursor: 'c1' });
  await rest.getMarkets({ status: 'open', limit: 1000, mve_filter: 'exclude' });
  await rest.getMarkets({ status: 'paused', limit: 1000, cursor: 'c2' });
  await rest.getMarkets({ status: 'closed', min_close_ts: nowS - 3600, limit: 1000, mve_filter: 'exclude' });
  await rest.getMarkets({ status: 'closed', max_close_ts: nowS, event_ticker: 'KXGOLDH-26AUG2711', series_ticker: 'KXGOLDH' });
  await rest.getMarkets({ tickers: ['KXGOLDH-26AUG2711-T4615.99', 'KXIPL-26-RCB'], limit: 100 });
  await rest.getMarket('KXGOLDH-26AUG2711-T4615.99');
  await rest.getOrderbook('KXGOLDH-26AUG2711-T4615.99', 10);
  await rest.getOrderbook('KXGOLDH-26AUG2711-T4615.99');
  await rest.getOrderbooks(['KXGOLDH-26AUG2711-T4615.99', 'KXIPL-26-RCB']);
  await rest.getOrderbooks(Array.from({ length: 100 }, (_, i) => `KXT-${i}`));
  await rest.getTrades({ ticker: 'KXGOLDH-26AUG2711-T4615.99', min_ts: nowS - 60, max_ts: nowS, limit: 1000 });
  await rest.getTrades({ min_ts: nowS - 60, max_ts: nowS, limit: 1000, cursor: 'c3' });
  await rest.getExchangeStatus();
}

test('the wire model (REST_ROUTES) matches the OpenAPI operations: paths, parameter names, array styles, auth', () => {
  for (const [name, route] of Object.entries(REST_ROUTES) as [string, RouteSpec][]) {
    const op = operation(route.path);
    const declared = params(op);
    for (const [key, style] of Object.entries(route.params)) {
      const p = declared.find((x) => x.in === 'query' && x.name === key);
      assert.ok(p, `${name}: ${key} is a query parameter of ${op.operationId}`);
      if (style === 'repeated') assert.ok(isExplodedFormArray(p), `${name}: ${key} is an exploded form array`);
      else assert.notEqual(p.schema.type, 'array', `${name}: ${key} is not an array parameter (${style})`);
      if (style === 'comma') assert.equal(p.schema.type, 'string', `${name}: ${key} is one comma-separated string`);
    }
    assert.equal(route.authRequired, (op.security ?? []).length > 0, `${name}: authRequired as ${op.operationId} lists security`);
  }
});

test('every request the REST client puts on the wire conforms to its OpenAPI operation, unsigned and signed', async () => {
  for (const signed of [false, true]) {
    server.requests.length = 0;
    // Signed: the test server checks each signature over timestamp + GET + path (no query) and answers 401 otherwise.
    server.verifyKey = signed ? keys.publicKey : undefined;
    await callEveryEndpoint(client(signed));
    assert.ok(server.requests.length >= 17, 'every call reached the server');
    const problems: string[] = [];
    const templates = new Set<string>();
    for (const r of server.requests) {
      assert.ok(r.path.startsWith(BASE_PATH), r.path);
      const path = r.path.slice(BASE_PATH.length);
      templates.add(templateOf(path).template);
      problems.push(...violations(path, r.query, r.headers as Record<string, unknown>));
      assert.equal(typeof r.headers['kalshi-access-signature'] === 'string', signed, `${path}: signed only when keys are configured`);
    }
    assert.deepEqual(problems, [], problems.join('\n'));
    assert.deepEqual(
      [...templates].sort(),
      Object.values(REST_ROUTES)
        .map((r) => r.path)
        .sort(),
      'every route of the wire model was exercised',
    );
  }
  server.verifyKey = undefined;
});

test('the validator rejects what Kalshi would: comma-joined orderbooks tickers, repeated /markets tickers, undeclared or out-of-range parameters', () => {
  const v = (path: string, q: string) => violations(path, new URLSearchParams(q), {});
  assert.deepEqual(v('/markets/orderbooks', 'tickers=A&tickers=B'), []);
  assert.ok(v('/markets/orderbooks', 'tickers=A,B').some((s) => s.includes('joins items with commas')));
  assert.deepEqual(v('/markets', 'tickers=A,B&limit=100'), []);
  assert.ok(v('/markets', 'tickers=A&tickers=B').some((s) => s.includes('scalar tickers sent 2 times')));
  assert.ok(v('/markets/orderbooks', '').some((s) => s.includes('required tickers missing')));
  assert.ok(v('/markets/trades', 'min_ts=1.5').some((s) => s.includes('not an integer')));
  assert.ok(v('/markets', 'limit=1001').some((s) => s.includes('outside')));
  assert.ok(v('/markets', 'status=active').some((s) => s.includes('not one of')));
  assert.ok(
    v('/series', 'cursor=x').some((s) => s.includes('cursor is not declared')),
    'GET /series takes no cursor',
  );
  assert.ok(v('/markets/orderbooks', Array.from({ length: 101 }, (_, i) => `tickers=T${i}`).join('&')).some((s) => s.includes('> 100')));
});

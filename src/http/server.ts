// Small HTTP server on uWebSockets.js for health, metrics and admin endpoints.
// Handlers are async and return a plain response; the adapter deals with uWS's rules
// (abort handling, corking, reading the body before the handler runs).
import uWS = require('./uws');

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  readonly remoteAddress: string;
}
export interface HttpResponse {
  status: number;
  body: string | Buffer;
  contentType?: string;
  headers?: Record<string, string>;
}
export type Handler = (req: HttpRequest) => HttpResponse | Promise<HttpResponse>;
export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  handler: Handler;
}
export interface HttpServer {
  readonly port: number;
  close(): void;
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  202: '202 Accepted',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  413: '413 Payload Too Large',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  502: '502 Bad Gateway',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};
export const statusLine = (status: number): string => STATUS_TEXT[status] ?? `${status} Status`;
// Request bodies are small (admin commands); anything larger is refused.
const BODY_BYTES_MAX = 64 * 1024;

export function json(status: number, value: unknown): HttpResponse {
  return { status, body: JSON.stringify(value), contentType: 'application/json' };
}

function send(res: uWS.HttpResponse, out: HttpResponse, state: { aborted: boolean }): void {
  if (state.aborted) return;
  res.cork(() => {
    res.writeStatus(statusLine(out.status));
    res.writeHeader('content-type', out.contentType ?? 'text/plain; charset=utf-8');
    for (const [k, v] of Object.entries(out.headers ?? {})) res.writeHeader(k, v);
    res.end(out.body);
  });
}

function serve(route: Route, res: uWS.HttpResponse, req: uWS.HttpRequest): void {
  const state = { aborted: false };
  res.onAborted(() => (state.aborted = true));
  const headers: Record<string, string> = {};
  req.forEach((k, v) => (headers[k] = v));
  const base = {
    method: route.method,
    path: req.getUrl(),
    query: new URLSearchParams(req.getQuery() ?? ''),
    headers,
    remoteAddress: Buffer.from(res.getRemoteAddressAsText()).toString(),
  };
  const run = (body: Buffer): void => {
    Promise.resolve()
      .then(() => route.handler({ ...base, body }))
      .then(
        (out) => send(res, out, state),
        (err: unknown) => send(res, json(500, { error: 'internal', code: (err as { code?: string }).code ?? 'KDP_ERR_INTERNAL' }), state),
      );
  };
  if (route.method === 'GET') return run(Buffer.alloc(0));
  const chunks: Buffer[] = [];
  let size = 0;
  res.onData((chunk, isLast) => {
    size += chunk.byteLength;
    if (size > BODY_BYTES_MAX) {
      if (!state.aborted) send(res, json(413, { error: 'body too large' }), state);
      state.aborted = true;
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast && !state.aborted) run(Buffer.concat(chunks));
  });
}

/** Listens on host:port (port 0 picks a free one) and serves the routes; 404 for the rest. */
export function startHttpServer(host: string, port: number, routes: readonly Route[]): Promise<HttpServer> {
  const app = uWS.App();
  for (const route of routes) {
    const bind = route.method === 'GET' ? app.get : route.method === 'POST' ? app.post : route.method === 'PUT' ? app.put : app.del;
    bind.call(app, route.path, (res, req) => serve(route, res, req));
  }
  app.any('/*', (res) => {
    res.cork(() => res.writeStatus(statusLine(404)).end('not found'));
  });
  return new Promise((resolve, reject) => {
    app.listen(host, port, (token) => {
      if (!token) return reject(new Error(`cannot listen on ${host}:${port}`));
      const bound = uWS.us_socket_local_port(token);
      resolve({ port: bound, close: () => uWS.us_listen_socket_close(token) });
    });
  });
}

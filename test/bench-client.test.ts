// The load generator's HTTP client (bench/httpClient.ts): framing by Content-Length across
// split packets, keep-alive reuse, and loud failures for what it does not handle.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { headerLines, makeClient } from '../bench/httpClient';

let server: Server;
let base = '';
let connections = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const u = req.url ?? '';
      if (u === '/split') {
        // headers, then the body in two writes with pauses: three TCP segments
        const text = JSON.stringify({ echo: body, key: req.headers['x-k'], big: 'é'.repeat(3000) });
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
        res.flushHeaders();
        const buf = Buffer.from(text);
        setTimeout(() => res.write(buf.subarray(0, 1001)), 10);
        setTimeout(() => res.end(buf.subarray(1001)), 20);
      } else if (u === '/teapot') {
        res.writeHead(418, { 'Content-Type': 'application/json', 'Content-Length': 18 }).end('{"error":"TEAPOT"}');
      } else if (u === '/chunked') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"a":');
        res.end('1}');
      } else if (u === '/hangup') {
        req.socket.destroy();
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 11 }).end('{"ok":true}');
      }
    });
  });
  server.on('connection', () => { connections++; });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));

describe('bench HTTP client', () => {
  it('frames a response split across packets, with multi-byte UTF-8, and reuses the connection', async () => {
    const c = makeClient(base, 1);
    const before = connections;
    for (let i = 0; i < 3; i++) {
      const r = await c.request(0, 'POST', '/split', headerLines({ 'X-K': 'v' }), `{"n":${i}}`);
      expect(r.status).toBe(200);
      const j = JSON.parse(r.body);
      expect([j.echo, j.key, j.big.length]).toEqual([`{"n":${i}}`, 'v', 3000]);
    }
    expect(connections - before).toBe(1);
    c.close();
  });

  it('skips a 2xx body only when asked to, and always decodes an error body', async () => {
    const c = makeClient(base, 1);
    expect(await c.request(0, 'GET', '/', '', undefined, false)).toEqual({ status: 200, body: '' });
    expect(await c.request(0, 'GET', '/teapot', '', undefined, false)).toEqual({ status: 418, body: '{"error":"TEAPOT"}' });
    c.close();
  });

  it('fails loudly on chunked bodies and on a connection closed mid-request, then reconnects', async () => {
    const c = makeClient(base, 1);
    await expect(c.request(0, 'GET', '/chunked', '')).rejects.toThrow(/chunked/);
    await expect(c.request(0, 'GET', '/hangup', '')).rejects.toThrow(/closed|ECONNRESET/);
    expect((await c.request(0, 'GET', '/', '')).status).toBe(200);
    c.close();
  });
});

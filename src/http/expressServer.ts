// The node:http server for an express app, with request/response objects born with the
// app's prototypes.
//
// Why: express re-parents every req/res (Object.setPrototypeOf to app.request /
// app.response) on entry. Re-parenting an object that node:http just built changes its
// hidden class, so the inline caches in node's own http and stream code go polymorphic
// and every later property access on req/res pays for it — measured ~30 µs of CPU per
// request on the reserve path. node:http lets the server construct its messages from
// given classes; when they already have express's prototypes, express's setPrototypeOf
// is a no-op and nothing changes shape. Express still handles every request.
import http from 'node:http';
import type { Express } from 'express';

export function createExpressServer(app: Express): http.Server {
  // Old-style constructors on purpose: node's IncomingMessage/ServerResponse are plain
  // functions, and `prototype` must be express's objects (which inherit node's).
  function Request(this: http.IncomingMessage, socket: any) {
    http.IncomingMessage.call(this, socket);
  }
  Request.prototype = app.request;
  function Response(this: http.ServerResponse, req: http.IncomingMessage, options?: any) {
    (http.ServerResponse as any).call(this, req, options);
  }
  Response.prototype = app.response;
  return http.createServer({
    IncomingMessage: Request as unknown as typeof http.IncomingMessage,
    ServerResponse: Response as unknown as typeof http.ServerResponse,
  }, app);
}

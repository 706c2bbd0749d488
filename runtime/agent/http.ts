/**
 * The agent's HTTP surface: plain `Bun.serve` with standard Request/Response. Every answer
 * comes from state the agent already holds: a scrape never waits on a device.
 * - GET /metrics: Prometheus text 0.0.4, or OpenMetrics 1.0.0 when the Accept header asks;
 * - GET /healthz: 200 once the first sample is in, 503 before;
 * - GET /v1/gpus, /v1/policies, /v1/advice: JSON;
 * - POST /v1/reload: reload the policy folders; only with a bearer token configured
 *   (`http.token_file`), else 403. Nothing else changes state over HTTP.
 * At most `connectionsMax` requests are served at once (more get 503), requests larger than
 * `requestBytesMax` are refused by the server.
 */
import { timingSafeEqual } from "node:crypto";
import type { Server } from "bun";

/** Idle connections are closed after this, s. */
export const HTTP_IDLE_TIMEOUT_s = 10;

export interface HttpHandlers {
  /** The latest rendering, plain and gzip-compressed. */
  metrics(openMetrics: boolean): Promise<{ body: Uint8Array; gzip: Uint8Array; contentType: string }>;
  ready(): boolean;
  gpus(): unknown;
  policies(): unknown;
  advice(): unknown;
  reload(): Promise<unknown>;
  /** Counts a served request. */
  served(path: string, code: number): void;
}

export interface HttpOptions {
  listen: { hostname: string; port: number } | { unix: string };
  connectionsMax: number;
  requestBytesMax: number;
  /** The bearer token that enables POST endpoints; undefined disables them. */
  token: string | undefined;
  handlers: HttpHandlers;
}

const KNOWN_PATHS = new Set(["/metrics", "/healthz", "/v1/gpus", "/v1/policies", "/v1/advice", "/v1/reload"]);

const json = (v: unknown, status = 200): Response =>
  new Response(`${JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2)}\n`, {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });

/** OpenMetrics versions the agent writes: 1.0.0, and 0.0.1, the name Prometheus also asks it by. */
const OPENMETRICS_VERSIONS = new Set(["1.0.0", "0.0.1"]);
/** Most media ranges of an Accept header weighed (Prometheus sends four). */
export const ACCEPT_RANGES_MAX = 32;

/** True when Accept-Encoding lists gzip (or `*`) with a quality above 0. */
export function acceptsGzip(header: string | null): boolean {
  if (header === null) return false;
  for (const part of header.split(",").slice(0, ACCEPT_RANGES_MAX)) {
    const [coding = "", ...params] = part.split(";").map((x) => x.trim().toLowerCase());
    if (coding !== "gzip" && coding !== "*") continue;
    const q = params.find((p) => p.startsWith("q="));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/**
 * True when the Accept header prefers OpenMetrics: an `application/openmetrics-text` range of
 * a version the agent writes (or none), with a quality above 0 and at least that of any range
 * the text format answers (`text/plain`, `text/*`, `*\/*`). Only the first ACCEPT_RANGES_MAX
 * ranges count.
 */
export function wantsOpenMetrics(accept: string | null): boolean {
  if (accept === null) return false;
  let openMetrics = 0;
  let text = 0;
  for (const range of accept.split(",").slice(0, ACCEPT_RANGES_MAX)) {
    const [type = "", ...params] = range.split(";").map((x) => x.trim());
    let q = 1;
    let version: string | undefined;
    for (const param of params) {
      const eq = param.indexOf("=");
      const name = param.slice(0, eq).trim().toLowerCase();
      const value = param.slice(eq + 1).trim();
      if (name === "q") q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value) ? Number(value) : 0;
      else if (name === "version") version = value;
    }
    const t = type.toLowerCase();
    if (t === "application/openmetrics-text") {
      if (version === undefined || OPENMETRICS_VERSIONS.has(version)) openMetrics = Math.max(openMetrics, q);
    } else if (t === "text/plain" || t === "text/*" || t === "*/*") text = Math.max(text, q);
  }
  return openMetrics > 0 && openMetrics >= text;
}

function tokenMatches(header: string | null, token: string): boolean {
  // The scheme is case-insensitive (RFC 7235 §2.1); the token is compared in constant time.
  if (header === null || !/^bearer /i.test(header)) return false;
  const a = Buffer.from(header.slice(7));
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The path of a request target: origin-form (`/metrics?x`, also what an HTTP/1.0 request
 * without a Host gives), absolute-form, or anything else (CONNECT's authority) read as a path.
 * Undefined when nothing parses.
 */
function pathOf(url: string): string | undefined {
  try {
    return new URL(url, "http://agent.invalid").pathname;
  } catch {
    return undefined;
  }
}

export function httpServe(o: HttpOptions): Server<undefined> {
  let inFlight = 0;
  const h = o.handlers;
  const route = async (req: Request, path: string): Promise<Response> => {
    if (path === "/v1/reload") {
      if (req.method !== "POST") return new Response("POST only\n", { status: 405, headers: { allow: "POST" } });
      if (o.token === undefined) return new Response("state changes over HTTP are disabled (set http.token_file in the agent config)\n", { status: 403 });
      if (!tokenMatches(req.headers.get("authorization"), o.token)) return new Response("bearer token required\n", { status: 401, headers: { "www-authenticate": "Bearer" } });
      // Read (and drop) the body: the server holds a chunked one to requestBytesMax only as
      // it is read; a declared Content-Length above it is refused before this handler.
      try {
        await req.arrayBuffer();
      } catch {
        return new Response(`request body above ${o.requestBytesMax} bytes\n`, { status: 413 });
      }
      return json(await h.reload());
    }
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("GET only\n", { status: 405, headers: { allow: "GET, HEAD" } });
    switch (path) {
      case "/metrics": {
        const m = await h.metrics(wantsOpenMetrics(req.headers.get("accept")));
        if (acceptsGzip(req.headers.get("accept-encoding"))) {
          return new Response(m.gzip, { headers: { "content-type": m.contentType, "content-encoding": "gzip", vary: "accept-encoding" } });
        }
        return new Response(m.body, { headers: { "content-type": m.contentType, vary: "accept-encoding" } });
      }
      case "/healthz":
        return h.ready() ? new Response("ok\n") : new Response("starting: no sample yet\n", { status: 503 });
      case "/v1/gpus":
        return json(h.gpus());
      case "/v1/policies":
        return json(h.policies());
      case "/v1/advice":
        return json(h.advice());
      default:
        return new Response("not found: try /metrics, /healthz, /v1/gpus, /v1/policies, /v1/advice\n", { status: 404 });
    }
  };
  const common = {
    maxRequestBodySize: o.requestBytesMax,
    idleTimeout: HTTP_IDLE_TIMEOUT_s,
    // Never Bun's development error page (it shows source paths and code to any client).
    development: false,
    // An address another agent holds is an error (EADDRINUSE), never shared: with
    // `development: false` Bun sets SO_REUSEPORT unless told otherwise, and the kernel then
    // splits scrapes between two agents on one port.
    reusePort: false,
    error: () => new Response("internal error\n", { status: 500 }),
    async fetch(req: Request): Promise<Response> {
      const path = pathOf(req.url);
      if (path === undefined) {
        h.served("other", 400);
        return new Response("bad request target\n", { status: 400 });
      }
      const label = KNOWN_PATHS.has(path) ? path : "other";
      if (inFlight >= o.connectionsMax) {
        h.served(label, 503);
        return new Response("too many requests in flight\n", { status: 503, headers: { "retry-after": "1" } });
      }
      inFlight++;
      let res: Response;
      try {
        res = await route(req, path);
      } catch (e) {
        res = new Response(`internal error: ${(e as Error).message}\n`, { status: 500 });
      } finally {
        inFlight--;
      }
      h.served(label, res.status);
      return res;
    },
  };
  if ("unix" in o.listen) return Bun.serve({ ...common, unix: o.listen.unix } as unknown as Parameters<typeof Bun.serve>[0]) as Server<undefined>;
  return Bun.serve({ ...common, hostname: o.listen.hostname, port: o.listen.port });
}

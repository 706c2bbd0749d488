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
  metrics(openMetrics: boolean): Promise<{ body: Uint8Array; contentType: string }>;
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

/** True when the Accept header prefers OpenMetrics. */
export function wantsOpenMetrics(accept: string | null): boolean {
  return accept !== null && /application\/openmetrics-text/i.test(accept);
}

function tokenMatches(header: string | null, token: string): boolean {
  if (header === null || !header.startsWith("Bearer ")) return false;
  const a = Buffer.from(header.slice(7));
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function httpServe(o: HttpOptions): Server<undefined> {
  let inFlight = 0;
  const h = o.handlers;
  const route = async (req: Request, path: string): Promise<Response> => {
    if (path === "/v1/reload") {
      if (req.method !== "POST") return new Response("POST only\n", { status: 405, headers: { allow: "POST" } });
      if (o.token === undefined) return new Response("state changes over HTTP are disabled (set http.token_file in the agent config)\n", { status: 403 });
      if (!tokenMatches(req.headers.get("authorization"), o.token)) return new Response("bearer token required\n", { status: 401, headers: { "www-authenticate": "Bearer" } });
      return json(await h.reload());
    }
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("GET only\n", { status: 405, headers: { allow: "GET, HEAD" } });
    switch (path) {
      case "/metrics": {
        const m = await h.metrics(wantsOpenMetrics(req.headers.get("accept")));
        return new Response(m.body, { headers: { "content-type": m.contentType } });
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
    async fetch(req: Request): Promise<Response> {
      const path = new URL(req.url).pathname;
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

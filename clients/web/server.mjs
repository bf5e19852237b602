// The frontend's server, shaped like a Next.js app with Better Auth: Better Auth at
// /api/auth (memory adapter, `jwt` plugin, email and password), and the page at /.
// The todo service is another origin; the page calls it with the JWT from
// /api/auth/token. The tests start this server as the real auth server.
//
//   node clients/web/server.mjs --port 3000 [--api http://127.0.0.1:8000]
import http from "node:http";
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    api: { type: "string", default: "http://127.0.0.1:8000" },
  },
});
if (!values.port) throw new Error("usage: server.mjs --port PORT [--api URL]");
const baseURL = `http://${values.host}:${values.port}`;

const auth = betterAuth({
  baseURL,
  secret: randomBytes(32).toString("hex"),
  database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
  emailAndPassword: { enabled: true },
  // Defaults: EdDSA (Ed25519) keys with a `kid`, 15-minute tokens, iss = aud = baseURL.
  plugins: [jwt()],
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
});
const authHandler = toNodeHandler(auth);

const here = dirname(fileURLToPath(import.meta.url));
const files = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["dist/app.js", "text/javascript; charset=utf-8"],
};

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", baseURL).pathname;
  if (path.startsWith("/api/auth/")) return authHandler(req, res);
  if (path === "/config.json") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ api: values.api }));
  }
  const file = files[path];
  if (!file) {
    res.writeHead(404, { "content-type": "text/plain" });
    return res.end("not found");
  }
  try {
    const body = await readFile(join(here, file[0]));
    res.writeHead(200, { "content-type": file[1] });
    res.end(body);
  } catch {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end(`${file[0]} is not built: npm run web:build`);
  }
});
server.listen(Number(values.port), values.host, () => {
  console.log(`auth and page on ${baseURL}, todo service at ${values.api}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));

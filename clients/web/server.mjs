// The frontend's server, shaped like a Next.js app with Better Auth: Better Auth at
// /api/auth (`jwt` plugin, email and password) and the page at /. Better Auth keeps its
// accounts in PostgreSQL, in a schema of its own (`better_auth`), so they survive a
// restart: the todo service's own database will do (`todo-service db-url` prints the
// embedded one's URL). The todo service is another origin; the page calls it with the
// JWT from /api/auth/token. The tests start this server as the real auth server;
// `npm run web:serve` (start.mjs) starts it beside the service.
//
//   node clients/web/server.mjs --port 3000 --database URL [--api http://127.0.0.1:8000]
//        [--keep-accounts]
//
// The page's origin is http://127.0.0.1:PORT, and http://localhost:PORT is trusted too:
// a browser pointed at either signs in (Better Auth refuses an origin it does not trust).
import http from "node:http";
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PostgresDialect } from "kysely";
import pg from "pg";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    api: { type: "string", default: "http://127.0.0.1:8000" },
    database: { type: "string" },
    // Users cannot delete their accounts, as on a deployment that does not allow it.
    "keep-accounts": { type: "boolean", default: false },
  },
});
if (!values.port || !values.database) {
  console.error("usage: server.mjs --port PORT --database POSTGRES_URL [--api URL]");
  process.exit(2);
}
const baseURL = `http://${values.host}:${values.port}`;
const loopback = ["127.0.0.1", "localhost"].includes(values.host);
const trustedOrigins = loopback
  ? [`http://127.0.0.1:${values.port}`, `http://localhost:${values.port}`]
  : [baseURL];
const SCHEMA = "better_auth";

// The URL means what it means to libpq, and so to the todo service reading the same one:
// `sslmode=require` encrypts without checking the certificate. node-postgres otherwise
// reads `require` as `verify-full` and refuses a server's self-signed certificate.
function withLibpqSemantics(url) {
  const parsed = new URL(url);
  if (parsed.searchParams.has("sslmode") && !parsed.searchParams.has("uselibpqcompat")) {
    parsed.searchParams.set("uselibpqcompat", "true");
  }
  return parsed.toString();
}

const database = new pg.Pool({
  connectionString: withLibpqSemantics(values.database),
  max: 5,
  // A database that is down is said at once, not waited for.
  connectionTimeoutMillis: 3000,
});
// A database that restarts drops the idle connections; the pool opens new ones. Without
// a listener, the dropped connection's error would end this process.
database.on("error", (error) => console.error(`database connection lost: ${error.message}`));

// The secret signs sessions and encrypts the signing keys stored beside the accounts:
// BETTER_AUTH_SECRET when given, otherwise one made on the first start and kept in the
// same schema, so that a restart keeps sessions and keys as well as accounts.
async function secret() {
  if (process.env.BETTER_AUTH_SECRET) return process.env.BETTER_AUTH_SECRET;
  await database.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA}.server_secret (secret text NOT NULL)`);
  await database.query(
    `INSERT INTO ${SCHEMA}.server_secret SELECT $1 WHERE NOT EXISTS (SELECT FROM ${SCHEMA}.server_secret)`,
    [randomBytes(32).toString("hex")],
  );
  const { rows } = await database.query(`SELECT secret FROM ${SCHEMA}.server_secret LIMIT 1`);
  return rows[0].secret;
}

await database.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
const auth = betterAuth({
  baseURL,
  trustedOrigins,
  secret: await secret(),
  // Every statement names the schema: a pooler in transaction mode (Neon's, PgBouncer)
  // refuses a search_path set when connecting, and one SET would reach other clients.
  database: {
    dialect: new PostgresDialect({ pool: database }),
    type: "postgres",
    schemaName: SCHEMA,
    transaction: true,
  },
  emailAndPassword: { enabled: true },
  // A user may delete their account (POST /api/auth/delete-user, with the password or a
  // fresh session): the conformance kit deletes the accounts it signs up this way.
  user: { deleteUser: { enabled: !values["keep-accounts"] } },
  // Defaults: EdDSA (Ed25519) keys with a `kid`, 15-minute tokens, iss = aud = baseURL.
  plugins: [jwt()],
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
});
// Better Auth's tables, made or brought up to date at every start (idempotent).
await (await getMigrations(auth.options)).runMigrations();
const authHandler = toNodeHandler(auth);

const here = dirname(fileURLToPath(import.meta.url));
const files = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["dist/app.js", "text/javascript; charset=utf-8"],
  "/favicon.svg": ["favicon.svg", "image/svg+xml"],
};

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", baseURL).pathname;
  if (path.startsWith("/api/auth/")) return authHandler(req, res);
  if (path === "/health") {
    // Whether sign-in's database answers: the page tells a database that is down from a
    // service that is down (with the embedded PostgreSQL, stopping `serve` stops both).
    try {
      await database.query("SELECT 1");
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ database: "up" }));
    } catch (error) {
      res.writeHead(503, { "content-type": "application/json" });
      return res.end(JSON.stringify({ database: "down", detail: error.message }));
    }
  }
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
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => database.end().then(() => process.exit(0))));
}

// `npm run web:serve`: the web example in one command. The todo service (`todo-service
// serve`, from the virtual environment `pip install .` made) in `jwt` mode, trusting the
// page's Better Auth; once it is ready, the page and Better Auth (server.mjs) on the
// service's database. Ctrl-C stops both.
//
// The ports are set here and nowhere else: WEB_PORT (default 3000) and API_PORT (default
// 8000). The service's trust (issuer, audience, keys) and CORS follow from them.
import { execFileSync, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const webPort = process.env.WEB_PORT || "3000";
const apiPort = process.env.API_PORT || "8000";
const origin = `http://127.0.0.1:${webPort}`;
const api = `http://127.0.0.1:${apiPort}`;
// Waiting longer than this for the service is waiting for nothing.
const READY_WITHIN_SECONDS = 120;

const env = {
  ...process.env,
  TODO_AUTH_MODE: "jwt",
  TODO_JWT_JWKS_URL: `${origin}/api/auth/jwks`,
  TODO_JWT_ISSUER: origin,
  TODO_JWT_AUDIENCE: origin,
  // The page may be opened on either name of the loopback; Better Auth trusts both too.
  TODO_CORS_ORIGINS: `${origin},http://localhost:${webPort}`,
};

function fail(message) {
  console.error(`web:serve: ${message}`);
  process.exitCode = 1;
}

const children = [];
let stopping = false;
let up = false;
function stopAll() {
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
}
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, stopAll);

function started(name, command, args) {
  const child = spawn(command, args, { env, stdio: "inherit" });
  children.push(child);
  child.on("error", (error) => {
    fail(
      error.code === "ENOENT"
        ? `${command} is not on PATH: activate the virtual environment \`pip install .\` installed it in`
        : `${command}: ${error.message}`,
    );
    stopAll();
  });
  child.on("exit", (code, signal) => {
    // Before the service is ready, the wait below says why it gave up.
    if (!stopping && up) {
      fail(`${name} exited (${signal ?? code}); stopping the rest`);
      stopAll();
    }
  });
  return child;
}

async function ready() {
  try {
    return (await fetch(`${api}/health/ready`, { signal: AbortSignal.timeout(2000) })).ok;
  } catch {
    return false;
  }
}

const service = started("the service", "todo-service", ["serve", "--port", apiPort]);
const deadline = Date.now() + READY_WITHIN_SECONDS * 1000;
while (!(await ready())) {
  if (stopping) process.exit();
  if (service.exitCode !== null) {
    fail(
      `todo-service serve stopped before it was ready (its error is above).` +
        ` Port ${apiPort} busy? Choose another: API_PORT=8001 npm run web:serve`,
    );
    process.exit();
  }
  if (Date.now() > deadline) {
    fail(`the service at ${api} was not ready within ${READY_WITHIN_SECONDS} s`);
    stopAll();
    process.exit();
  }
  await new Promise((resolve) => setTimeout(resolve, 250));
}
const database = execFileSync("todo-service", ["db-url"], { env, encoding: "utf8" }).trim();
const here = dirname(fileURLToPath(import.meta.url));
const page = [join(here, "server.mjs"), "--port", webPort, "--api", api, "--database", database];
started("the page's server", process.execPath, page);
up = true;
console.log(`web:serve: open ${origin} (the service is at ${api})`);

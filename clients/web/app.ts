// The page: signs in with Better Auth (same origin as this page), then drives the todo
// service (another origin) through the client generated from openapi.yaml, sending
// Better Auth's JWT as the bearer token. Built by `npm run web:build` (esbuild).
import { createAuthClient } from "better-auth/client";
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type Todo = components["schemas"]["Todo"];
type Problem = components["schemas"]["Problem"];

const auth = createAuthClient({ baseURL: window.location.origin });
const { api: apiBase } = (await (await fetch("/config.json")).json()) as { api: string };

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing`);
  return found as T;
}

const status = element<HTMLParagraphElement>("status");

// Better Auth's `jwt` plugin hands a short-lived token for the session cookie; it is
// fetched when needed and again when the service says it expired.
let token: string | null = null;

async function freshToken(): Promise<string> {
  const answer = await fetch("/api/auth/token", { credentials: "same-origin" });
  if (!answer.ok) throw new Error(`no token from the auth server (${answer.status})`);
  token = ((await answer.json()) as { token: string }).token;
  return token;
}

const bearer: Middleware = {
  async onRequest({ request }) {
    request.headers.set("Authorization", `Bearer ${token ?? (await freshToken())}`);
    return request;
  },
  async onResponse({ request, response }) {
    status.textContent = `${request.method} ${new URL(request.url).pathname}: ${response.status} (request ${response.headers.get("X-Request-ID") ?? "?"})`;
    if (response.status !== 401) return response;
    const problem = (await response.clone().json()) as Problem;
    if (problem.code !== "TOKEN_EXPIRED") return response;
    const retry = request.clone();
    retry.headers.set("Authorization", `Bearer ${await freshToken()}`);
    return fetch(retry);
  },
};

const api = createClient<paths>({ baseUrl: apiBase });
api.use(bearer);

function problemText(error: Problem | undefined): string {
  return error ? `${error.code}: ${error.detail}` : "unexpected answer";
}

function busy(state: "busy" | "ready"): void {
  document.body.dataset.state = state;
}

function render(items: Todo[]): void {
  const list = element<HTMLUListElement>("todos");
  list.replaceChildren(
    ...items.map((todo) => {
      const row = document.createElement("li");
      row.className = todo.is_completed ? "todo done" : "todo";
      row.dataset.id = todo.id;
      const toggle = document.createElement("input");
      toggle.type = "checkbox";
      toggle.className = "toggle";
      toggle.checked = todo.is_completed;
      toggle.addEventListener("change", () => void complete(todo, toggle.checked));
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = todo.title;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "delete";
      remove.textContent = "Delete";
      remove.addEventListener("click", () => void drop(todo));
      row.append(toggle, title, remove);
      return row;
    }),
  );
  const count = element("count");
  count.dataset.count = String(items.length);
  count.textContent =
    items.length === 0 ? "No todos yet." : `${items.length} ${items.length === 1 ? "todo" : "todos"}`;
  element("problem").hidden = true;
}

// What the page knows when the list cannot be read: nothing about the todos, which is
// never "0 todos". They are kept by the service; the page says so, and what went wrong.
function unknown(why: string): void {
  const count = element("count");
  delete count.dataset.count;
  count.textContent = "";
  const problem = element("problem");
  problem.textContent = `Your todos could not be loaded: ${why}. They are kept by the service; reload the page to try again.`;
  problem.hidden = false;
}

// Why the service cannot give the list: down, or up without its database (the 503's
// problem detail says which part is out of reach). None when it says it is ready.
async function serviceTrouble(): Promise<string | null> {
  let answer;
  try {
    answer = await fetch(`${apiBase}/health/ready`);
  } catch {
    return `the todo service at ${apiBase} cannot be reached`;
  }
  if (answer.ok) return null;
  const problem = (await answer.json().catch(() => null)) as Problem | null;
  return `the todo service at ${apiBase} is up, but its database is not (${answer.status}: ${problem?.detail ?? "no detail"})`;
}

// Whether sign-in's own database answers (server.mjs's /health), when sign-in fails.
async function authTrouble(): Promise<string | null> {
  try {
    const answer = await fetch("/health");
    if (answer.ok) return null;
    const { detail } = (await answer.json()) as { detail?: string };
    return `sign-in's database is down (${detail ?? answer.status})`;
  } catch {
    return "the page's own server cannot be reached";
  }
}

async function refresh(): Promise<void> {
  let answer;
  try {
    answer = await api.GET("/api/v1/todos");
  } catch {
    unknown((await serviceTrouble()) ?? `the todo service at ${apiBase} cannot be reached`);
    return;
  }
  const { data, error, response } = answer;
  if (!data) {
    const trouble = response.status === 503 ? await serviceTrouble() : null;
    unknown(trouble ?? `the todo service answered ${response.status} (${problemText(error)})`);
    return;
  }
  render(data.items);
  // Read across origins only because the service exposes it (CORS).
  document.body.dataset.listEtag = response.headers.get("ETag") ?? "";
}

async function add(title: string): Promise<void> {
  // A fresh Idempotency-Key per todo: a retried POST can never create it twice.
  const { data, error, response } = await api.POST("/api/v1/todos", {
    params: { header: { "Idempotency-Key": crypto.randomUUID() } },
    body: { title },
  });
  if (!data) throw new Error(problemText(error));
  document.body.dataset.lastLocation = response.headers.get("Location") ?? "";
}

async function complete(todo: Todo, done: boolean): Promise<void> {
  await act(async () => {
    const { data, error } = await api.PATCH("/api/v1/todos/{todo_id}", {
      params: { path: { todo_id: todo.id } },
      body: { is_completed: done },
    });
    if (!data) throw new Error(problemText(error));
  });
}

async function drop(todo: Todo): Promise<void> {
  await act(async () => {
    const { response, error } = await api.DELETE("/api/v1/todos/{todo_id}", {
      params: { path: { todo_id: todo.id } },
    });
    if (response.status !== 204) throw new Error(problemText(error));
  });
}

// A change to the todos, then the list read again.
async function act(work: () => Promise<void>): Promise<void> {
  await attempt(async () => {
    await work();
    await refresh();
  });
}

async function attempt(work: () => Promise<void>): Promise<void> {
  busy("busy");
  try {
    await work();
  } catch (error) {
    status.textContent = error instanceof TypeError ? `${error.message}: is the service at ${apiBase} up?` : String(error);
  } finally {
    busy("ready");
  }
}

// Signed in, the list (read once); signed out, the forms, and no line left over from
// the last user's requests.
async function show(): Promise<void> {
  const session = await auth.getSession();
  if (session.error) {
    // Said part by part: with the embedded PostgreSQL, stopping `serve` stops the
    // database sign-in keeps its accounts in, and the page should not blame sign-in alone.
    const causes = [await authTrouble(), await serviceTrouble()].filter(Boolean);
    const why = causes.length ? `: ${causes.join("; ")}` : "";
    status.textContent = `Sign-in is unavailable (the auth server answered ${session.error.status}, ${session.error.message ?? "no detail"})${why}.`;
    busy("ready");
    return;
  }
  const user = session.data?.user;
  element("auth").hidden = Boolean(user);
  element("app").hidden = !user;
  if (user) {
    element("who").textContent = user.email;
    await refresh();
  } else {
    status.textContent = "";
  }
  busy("ready");
}

function fieldValue(id: string): string {
  return element<HTMLInputElement>(id).value;
}

element<HTMLFormElement>("signup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void attempt(async () => {
    const { error } = await auth.signUp.email({
      name: fieldValue("signup-name"),
      email: fieldValue("signup-email"),
      password: fieldValue("signup-password"),
    });
    if (error) throw new Error(error.message ?? "sign-up failed");
    token = null;
    await show();
  });
});

element<HTMLFormElement>("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void attempt(async () => {
    const { error } = await auth.signIn.email({
      email: fieldValue("signin-email"),
      password: fieldValue("signin-password"),
    });
    if (error) throw new Error(error.message ?? "sign-in failed");
    token = null;
    await show();
  });
});

element("signout").addEventListener("click", () => {
  void (async () => {
    busy("busy");
    await auth.signOut();
    token = null;
    element<HTMLUListElement>("todos").replaceChildren();
    element("problem").hidden = true;
    await show();
  })();
});

element<HTMLFormElement>("new-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = element<HTMLInputElement>("new-title");
  const title = input.value;
  void act(async () => {
    await add(title);
    input.value = "";
  });
});

await show();

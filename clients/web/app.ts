// The page: signs in with Better Auth (same origin as this page), then drives the todo
// service (another origin) on /api/v2 through the client generated from openapi.yaml,
// sending Better Auth's JWT as the bearer token: TodoMVC (All / Active / Completed,
// "N items left", toggle all, clear completed, edit in place) with priority, due date,
// tags, search and sort. Built by `npm run web:build` (esbuild).
import { createAuthClient } from "better-auth/client";
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type Todo = components["schemas"]["TodoV2"];
type Summary = components["schemas"]["TodoSummary"];
type Problem = components["schemas"]["Problem"];
type Priority = components["schemas"]["Priority"];
type Sort = components["parameters"]["Sort"];
type Show = "all" | "active" | "completed";

const auth = createAuthClient({ baseURL: window.location.origin });
const { api: apiBase } = (await (await fetch("/config.json")).json()) as { api: string };

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing`);
  return found as T;
}

const status = element<HTMLParagraphElement>("status");
// What a person reads when the browser cannot reach the service at all.
const UNREACHABLE = "Cannot reach the todo service. Check your connection and try again.";

// Better Auth's `jwt` plugin hands a short-lived token for the session cookie; it is
// fetched when needed and again when the service says it expired.
let token: string | null = null;

async function freshToken(): Promise<string> {
  const answer = await fetch("/api/auth/token", { credentials: "same-origin" });
  if (!answer.ok) throw new Error(`Sign-in gave no token (${answer.status}); sign in again.`);
  token = ((await answer.json()) as { token: string }).token;
  return token;
}

const bearer: Middleware = {
  async onRequest({ request }) {
    request.headers.set("Authorization", `Bearer ${token ?? (await freshToken())}`);
    return request;
  },
  async onResponse({ request, response }) {
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

// A problem's `detail` is written for people; its other members are for programs.
function problemText(error: Problem | undefined, code: number): string {
  return error?.detail ?? `The todo service answered ${code}; try again.`;
}

function busy(state: "busy" | "ready"): void {
  document.body.dataset.state = state;
}

// What the list shows (the filter, the search, the sort) and what it last read.
const view: { show: Show; q: string; sort: Sort } = { show: "all", q: "", sort: "-created_at" };
let shown: Todo[] = [];
let nextCursor: string | null = null;
let summary: Summary | null = null;

function button(text: string, label: string, className: string, onClick: () => void): HTMLButtonElement {
  const made = document.createElement("button");
  made.type = "button";
  made.className = className;
  made.textContent = text;
  made.setAttribute("aria-label", label);
  made.addEventListener("click", onClick);
  return made;
}

function span(className: string, text: string): HTMLSpanElement {
  const made = document.createElement("span");
  made.className = className;
  made.textContent = text;
  return made;
}

function row(todo: Todo): HTMLLIElement {
  const item = document.createElement("li");
  item.className = todo.is_completed ? "todo done" : "todo";
  item.dataset.id = todo.id;
  const toggle = document.createElement("input");
  toggle.type = "checkbox";
  toggle.className = "toggle";
  toggle.checked = todo.is_completed;
  toggle.setAttribute("aria-label", `Completed: “${todo.title}”`);
  toggle.addEventListener("change", () => void complete(todo, toggle.checked));
  const title = span("title", todo.title);
  title.title = "Double-click to edit";
  title.addEventListener("dblclick", () => void edit(todo, item));
  const details = span("details", "");
  if (todo.priority !== "none") details.append(span(`priority ${todo.priority}`, `${todo.priority} priority`));
  if (todo.due_at) {
    const due = document.createElement("time");
    due.className = "due";
    due.dateTime = todo.due_at;
    const overdue = !todo.is_completed && Date.parse(todo.due_at) < Date.now();
    const at = new Date(todo.due_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    due.textContent = `${overdue ? "overdue, was due" : "due"} ${at}`;
    due.classList.toggle("overdue", overdue);
    details.append(due);
  }
  for (const tag of todo.tags) details.append(span("tag", `#${tag}`));
  const rename = button("Edit", `Edit “${todo.title}”`, "edit", () => void edit(todo, item));
  const remove = button("Delete", `Delete “${todo.title}”`, "delete", () => void drop(todo));
  item.append(toggle, title, details, rename, remove);
  return item;
}

function render(counts: Summary): void {
  element<HTMLUListElement>("todos").replaceChildren(...shown.map(row));
  element("more").hidden = nextCursor === null;
  // "N items left" counts the open todos only, whatever the list shows.
  const count = element("count");
  count.dataset.count = String(counts.open);
  count.textContent =
    counts.total === 0 ? "No todos yet." : `${counts.open} ${counts.open === 1 ? "item" : "items"} left`;
  element("empty").textContent = counts.total > 0 && shown.length === 0 ? "No todos match what is shown." : "";
  element("controls").hidden = counts.total === 0;
  const toggleAll = element<HTMLInputElement>("toggle-all");
  toggleAll.checked = counts.total > 0 && counts.open === 0;
  element("toggle-all-label").textContent = toggleAll.checked ? "Mark all as active" : "Mark all as complete";
  const clear = element<HTMLButtonElement>("clear-completed");
  clear.hidden = counts.completed === 0;
  clear.textContent = `Clear completed (${counts.completed})`;
  for (const show of ["all", "active", "completed"] as const) {
    element(`show-${show}`).setAttribute("aria-pressed", String(view.show === show));
  }
  element("problem").hidden = true;
}

// What the page knows when the list cannot be read: nothing about the todos, which is
// never "0 todos". They are kept by the service; the page says so, and what went wrong.
function unknown(why: string): void {
  const count = element("count");
  delete count.dataset.count;
  count.textContent = "";
  shown = [];
  element<HTMLUListElement>("todos").replaceChildren();
  const problem = element("problem");
  problem.textContent = `${why} Your todos are kept by the service; reload the page to try again.`;
  problem.hidden = false;
}

// Why the service cannot give the list: down, or up without its database (the 503's
// problem detail says which part is out of reach). None when it says it is ready.
async function serviceTrouble(): Promise<string | null> {
  let answer;
  try {
    answer = await fetch(`${apiBase}/health/ready`);
  } catch {
    return UNREACHABLE;
  }
  if (answer.ok) return null;
  const problem = (await answer.json().catch(() => null)) as Problem | null;
  return `The todo service at ${apiBase} is up, but its database is not (${answer.status}: ${problem?.detail ?? "no detail"}).`;
}

// Whether sign-in's own database answers (server.mjs's /health), when sign-in fails.
async function authTrouble(): Promise<string | null> {
  try {
    const answer = await fetch("/health");
    if (answer.ok) return null;
    const { detail } = (await answer.json()) as { detail?: string };
    return `Sign-in's database is down (${detail ?? answer.status}).`;
  } catch {
    return "The page's own server cannot be reached.";
  }
}

function listQuery(cursor: string | null) {
  return {
    ...(view.show === "all" ? {} : { completed: view.show === "completed" }),
    ...(view.q ? { q: view.q } : {}),
    sort: view.sort,
    limit: 100,
    ...(cursor ? { cursor } : {}),
  };
}

// Reads stay in order: the answer to an older read (a search typed on since) is dropped.
let reads = 0;

// The list (its first page, or the next one appended) and the counts, read together.
async function refresh(more = false): Promise<void> {
  const read = ++reads;
  let listed, counted;
  try {
    [listed, counted] = await Promise.all([
      api.GET("/api/v2/todos", { params: { query: listQuery(more ? nextCursor : null) } }),
      api.GET("/api/v2/todos/summary"),
    ]);
  } catch {
    if (read === reads) unknown((await serviceTrouble()) ?? UNREACHABLE);
    return;
  }
  if (read !== reads) return;
  if (!listed.data || !counted.data) {
    const failed = listed.data ? counted : listed;
    const trouble = failed.response.status === 503 ? await serviceTrouble() : null;
    unknown(trouble ?? problemText(failed.error, failed.response.status));
    return;
  }
  shown = more ? [...shown, ...listed.data.items] : listed.data.items;
  nextCursor = listed.data.next_cursor ?? null;
  summary = counted.data;
  render(summary);
  // Read across origins only because the service exposes it (CORS).
  document.body.dataset.listEtag = listed.response.headers.get("ETag") ?? "";
}

async function add(title: string, priority: Priority, due: string, tags: string): Promise<void> {
  // A fresh Idempotency-Key per todo: a retried POST can never create it twice.
  const { data, error, response } = await api.POST("/api/v2/todos", {
    params: { header: { "Idempotency-Key": crypto.randomUUID() } },
    body: {
      title,
      priority,
      tags: [...new Set(tags.split(",").map((tag) => tag.trim()).filter(Boolean))],
      // datetime-local is the person's local time; the service wants an offset.
      ...(due ? { due_at: new Date(due).toISOString() } : {}),
    },
  });
  if (!data) throw new Error(problemText(error, response.status));
  document.body.dataset.lastLocation = response.headers.get("Location") ?? "";
}

async function complete(todo: Todo, done: boolean): Promise<void> {
  await act(async () => {
    const { data, error, response } = await api.PATCH("/api/v2/todos/{todo_id}", {
      params: { path: { todo_id: todo.id } },
      body: { is_completed: done },
    });
    if (!data) throw new Error(problemText(error, response.status));
  });
}

async function drop(todo: Todo): Promise<void> {
  await act(async () => {
    const { response, error } = await api.DELETE("/api/v2/todos/{todo_id}", {
      params: { path: { todo_id: todo.id } },
    });
    if (response.status !== 204) throw new Error(problemText(error, response.status));
  });
}

const CHANGED_ELSEWHERE = "Your todos changed elsewhere; reloaded them. Try again if you still want to.";

// Toggle all, as one request: every open todo completed or, when all are, every one
// reopened. If-Match with the list's ETag: had anything changed since the page read it,
// nothing is written and the page reads it again.
async function toggleAll(): Promise<void> {
  const reopen = summary !== null && summary.total > 0 && summary.open === 0;
  await act(async () => {
    const { data, error, response } = await api.PATCH("/api/v2/todos", {
      params: { query: { completed: reopen }, header: { "If-Match": document.body.dataset.listEtag || "*" } },
      body: { is_completed: !reopen },
    });
    if (response.status === 412) throw new Error(CHANGED_ELSEWHERE);
    if (!data) throw new Error(problemText(error, response.status));
  });
}

// Clear completed, as one request, on the same condition.
async function clearCompleted(): Promise<void> {
  await act(async () => {
    const { data, error, response } = await api.DELETE("/api/v2/todos", {
      params: { query: { completed: true }, header: { "If-Match": document.body.dataset.listEtag || "*" } },
    });
    if (response.status === 412) throw new Error(CHANGED_ELSEWHERE);
    if (!data) throw new Error(problemText(error, response.status));
  });
}

// Edit in place: the todo is read afresh for its ETag and its title becomes an input;
// Enter or leaving the input saves with If-Match, Escape cancels. Had the todo changed
// elsewhere meanwhile (412), nothing is written and the page shows it as it now is.
async function edit(todo: Todo, item: HTMLLIElement): Promise<void> {
  const title = item.querySelector(".title");
  if (!title) return;
  await attempt(async () => {
    const { data, error, response } = await api.GET("/api/v2/todos/{todo_id}", {
      params: { path: { todo_id: todo.id } },
    });
    if (!data) throw new Error(problemText(error, response.status));
    const etag = response.headers.get("ETag") ?? "*";
    const input = document.createElement("input");
    input.className = "editing";
    input.value = data.title;
    input.maxLength = 255;
    input.setAttribute("aria-label", `New title for “${data.title}”`);
    title.replaceWith(input);
    let finished = false;
    const finish = (save: boolean): void => {
      if (finished) return;
      finished = true;
      const text = input.value.trim();
      if (!save || text === data.title) {
        input.replaceWith(title);
        return;
      }
      void act(async () => {
        if (!text) throw new Error("A todo needs a title; it was left as it was.");
        const saved = await api.PATCH("/api/v2/todos/{todo_id}", {
          params: { path: { todo_id: todo.id }, header: { "If-Match": etag } },
          body: { title: text },
        });
        if (saved.response.status === 412) {
          throw new Error("This todo changed elsewhere; reloaded it. Your edit was not saved.");
        }
        if (!saved.data) throw new Error(problemText(saved.error, saved.response.status));
      });
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") finish(true);
      else if (event.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    input.focus();
  });
}

// A change to the todos, then the list and the counts read again (after a refusal
// too: a 412 says the page's view is stale).
async function act(work: () => Promise<void>): Promise<void> {
  await attempt(async () => {
    try {
      await work();
    } finally {
      await refresh();
    }
  });
}

async function attempt(work: () => Promise<void>): Promise<void> {
  busy("busy");
  status.textContent = "";
  try {
    await work();
  } catch (error) {
    // fetch rejects with a TypeError when the service cannot be reached at all.
    status.textContent =
      error instanceof TypeError ? UNREACHABLE : error instanceof Error ? error.message : String(error);
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
    status.textContent = [
      `Sign-in is unavailable (${session.error.message ?? `the auth server answered ${session.error.status}`}).`,
      ...causes,
    ].join(" ");
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
    if (error) throw new Error(error.message ?? "Sign-up failed; try again.");
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
    if (error) throw new Error(error.message ?? "Sign-in failed; try again.");
    token = null;
    await show();
  });
});

element("signout").addEventListener("click", () => {
  void (async () => {
    busy("busy");
    await auth.signOut();
    token = null;
    shown = [];
    element<HTMLUListElement>("todos").replaceChildren();
    element("problem").hidden = true;
    await show();
  })();
});

element<HTMLFormElement>("new-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const title = element<HTMLInputElement>("new-title");
  const priority = element<HTMLSelectElement>("new-priority");
  const due = element<HTMLInputElement>("new-due");
  const tags = element<HTMLInputElement>("new-tags");
  void act(async () => {
    await add(title.value, priority.value as Priority, due.value, tags.value);
    title.value = due.value = tags.value = "";
    priority.value = "none";
  });
});

for (const show of ["all", "active", "completed"] as const) {
  element(`show-${show}`).addEventListener("click", () => {
    view.show = show;
    void attempt(() => refresh());
  });
}

element<HTMLSelectElement>("sort").addEventListener("change", (event) => {
  view.sort = (event.target as HTMLSelectElement).value as Sort;
  void attempt(() => refresh());
});

// The search runs as one types, once typing pauses.
let typing: number | undefined;
element<HTMLInputElement>("search").addEventListener("input", (event) => {
  window.clearTimeout(typing);
  busy("busy");
  typing = window.setTimeout(() => {
    view.q = (event.target as HTMLInputElement).value.trim().slice(0, 100);
    void attempt(() => refresh());
  }, 250);
});

element("toggle-all").addEventListener("change", () => void toggleAll());
element("clear-completed").addEventListener("click", () => void clearCompleted());
element("more").addEventListener("click", () => void attempt(() => refresh(true)));

await show();

// Drives the live service through the client generated from openapi.yaml:
// create, list, get, patch, delete, then a 404 and a 422 read as typed problems;
// then /api/v2: priority, due_at and tags, filters, search, sorts and pages.
// Usage: node dist/scenario.js BASE_URL
import createClient from "openapi-fetch";
import { randomUUID } from "node:crypto";
import type { components, paths } from "./generated/schema.js";

type Problem = components["schemas"]["Problem"];
type Todo = components["schemas"]["Todo"];

const baseUrl = process.argv[2];
if (!baseUrl) throw new Error("usage: scenario.js BASE_URL");
const client = createClient<paths>({ baseUrl });
const user = { "X-User-ID": randomUUID() };

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`failed: ${what}`);
  console.log(`ok: ${what}`);
}

const created = await client.POST("/api/v1/todos", {
  params: { header: user },
  body: { title: "From TypeScript", description: null },
});
check(created.response.status === 201 && created.data !== undefined, "create answers 201");
const todo: Todo = created.data!;
check(todo.is_completed === false && todo.description === null, "a new todo is open, no description");

const listed = await client.GET("/api/v1/todos", { params: { header: user } });
check(listed.data?.count === 1 && listed.data.items[0]?.id === todo.id, "list holds the new todo");

const path = { todo_id: todo.id };
const fetched = await client.GET("/api/v1/todos/{todo_id}", { params: { header: user, path } });
check(fetched.data?.title === "From TypeScript", "get returns it");

const patched = await client.PATCH("/api/v1/todos/{todo_id}", {
  params: { header: user, path },
  body: { is_completed: true },
});
check(patched.data?.is_completed === true, "patch completes it");

const deleted = await client.DELETE("/api/v1/todos/{todo_id}", { params: { header: user, path } });
check(deleted.response.status === 204, "delete answers 204");

const missing = await client.GET("/api/v1/todos/{todo_id}", { params: { header: user, path } });
const notFound: Problem | undefined = missing.error;
check(missing.response.status === 404 && notFound?.code === "NOT_FOUND", "a deleted todo is a typed 404 problem");

const invalid = await client.POST("/api/v1/todos", { params: { header: user }, body: { title: " " } });
const validation: Problem | undefined = invalid.error;
check(
  invalid.response.status === 422 &&
    validation?.code === "VALIDATION_ERROR" &&
    validation.errors?.[0]?.field === "title",
  "a blank title is a typed 422 problem naming the field",
);

// 1.1, used through the same generated client: safe retries, conditional requests, pages.
const key = { "Idempotency-Key": randomUUID() };
const once = await client.POST("/api/v1/todos", { params: { header: { ...user, ...key } }, body: { title: "Once" } });
const retried = await client.POST("/api/v1/todos", { params: { header: { ...user, ...key } }, body: { title: "Once" } });
check(
  retried.response.headers.get("Idempotent-Replayed") === "true" && retried.data?.id === once.data?.id,
  "a retried create with the same Idempotency-Key replays the first answer",
);

const onceId = { todo_id: once.data!.id };
const read = await client.GET("/api/v1/todos/{todo_id}", { params: { header: user, path: onceId } });
const etag = read.response.headers.get("ETag")!;
const cached = await client.GET("/api/v1/todos/{todo_id}", {
  params: { header: { ...user, "If-None-Match": etag }, path: onceId },
});
check(cached.response.status === 304, "If-None-Match with the ETag answers 304");

const renamed = await client.PATCH("/api/v1/todos/{todo_id}", {
  params: { header: { ...user, "If-Match": etag }, path: onceId },
  body: { title: "Once, renamed" },
});
const lost = await client.PATCH("/api/v1/todos/{todo_id}", {
  params: { header: { ...user, "If-Match": etag }, path: onceId },
  body: { title: "A lost update" },
});
check(
  renamed.response.status === 200 && lost.response.status === 412 && lost.error?.code === "PRECONDITION_FAILED",
  "If-Match lets the first writer win and tells the second (412)",
);

await client.POST("/api/v1/todos", { params: { header: user }, body: { title: "Second" } });
const firstPage = await client.GET("/api/v1/todos", { params: { header: user, query: { limit: 1 } } });
const cursor = firstPage.data?.next_cursor;
const secondPage = cursor
  ? await client.GET("/api/v1/todos", { params: { header: user, query: { limit: 1, cursor } } })
  : undefined;
check(
  firstPage.data?.count === 1 &&
    typeof cursor === "string" &&
    firstPage.response.headers.get("Link")?.includes('rel="next"') === true &&
    secondPage?.data?.next_cursor === null &&
    secondPage.data.items[0]?.id !== firstPage.data.items[0]?.id,
  "pages of one walk the list with next_cursor and Link",
);

// 2.0, the same client: /api/v2 with priority, due_at and tags, filtered, sorted and paged.
type TodoV2 = components["schemas"]["TodoV2"];
const v2Created: TodoV2[] = [];
for (const body of [
  { title: "Report", priority: "high" as const, due_at: "2031-01-02T09:00:00+01:00", tags: ["work"] },
  { title: "Milk", priority: "low" as const, tags: ["home"] },
  { title: "Slides", priority: "high" as const, due_at: "2031-01-01T09:00:00Z", tags: ["work", "talk"] },
]) {
  const made = await client.POST("/api/v2/todos", { params: { header: user }, body });
  if (made.data) v2Created.push(made.data);
}
const [report, milk, slides] = v2Created;
check(
  v2Created.length === 3 &&
    report?.due_at !== null &&
    new Date(report!.due_at!).toISOString() === "2031-01-02T08:00:00.000Z" &&
    milk?.due_at === null &&
    milk.completed_at === null &&
    slides?.tags.join() === "work,talk",
  "v2 creates answer priority, due_at (in UTC) and tags",
);

const work = await client.GET("/api/v2/todos", {
  params: { header: user, query: { tag: ["work"], priority: ["high"], sort: "due_at" } },
});
check(
  work.data?.items.map((t) => t.id).join() === [slides?.id, report?.id].join(),
  "v2 filters by tag and priority and sorts by due_at",
);

const searched = await client.GET("/api/v2/todos", {
  params: { header: user, query: { q: "MILK", completed: false } },
});
check(searched.data?.count === 1 && searched.data.items[0]?.id === milk?.id, "v2 searches ignoring case");

const byPriority = await client.GET("/api/v2/todos", {
  params: { header: user, query: { sort: "-priority", limit: 3 } },
});
const next = byPriority.data?.next_cursor;
const rest = next
  ? await client.GET("/api/v2/todos", {
      params: { header: user, query: { sort: "-priority", limit: 3, cursor: next } },
    })
  : undefined;
const walked = [...(byPriority.data?.items ?? []), ...(rest?.data?.items ?? [])].map((t) => t.priority);
check(
  typeof next === "string" && rest?.data?.next_cursor === null && walked.join() === "high,high,low,none,none",
  "v2 pages walk a sort with next_cursor",
);

const done = await client.PATCH("/api/v2/todos/{todo_id}", {
  params: { header: user, path: { todo_id: milk!.id } },
  body: { is_completed: true, tags: [] },
});
const asV1 = await client.GET("/api/v1/todos/{todo_id}", {
  params: { header: user, path: { todo_id: milk!.id } },
});
check(
  done.data?.completed_at !== null && asV1.data?.is_completed === true && !("priority" in (asV1.data ?? {})),
  "a v2 completion sets completed_at and is seen under v1 without the 2.0 members",
);

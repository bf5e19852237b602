// Drives the live service through the client generated from openapi.yaml:
// create, list, get, patch, delete, then a 404 and a 422 read as typed problems.
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

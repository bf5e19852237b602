-- One wrk script for every operation, chosen by environment variables:
--   BENCH_OP      get | list | page | v2page | v2summary | create | create_once | patch | delete
--                 | constant
--                 | mcp_create | mcp_list (the same create and list as MCP tool calls)
--   BENCH_FIRST, BENCH_LAST   the seeded todos to pick from (see bench/layout.py)
--   BENCH_USER    the user whose list (or page) is read
--   BENCH_LIMIT, BENCH_CURSOR the page: its size and where it starts (none: the first)
--   BENCH_QUERY   v2page: the query of a /api/v2/todos page (its filters, sort, cursor)
--   BENCH_IF_NONE_MATCH       sent with lists: an ETag, for 304s
--   BENCH_AUTH    "Name: value", sent instead of X-User-ID (a bearer token, or one user)
--   BENCH_RUN     makes this run's Idempotency-Keys its own
--   BENCH_THREADS wrk's -t, so deleting threads take disjoint ids
local op = os.getenv("BENCH_OP")
local first = tonumber(os.getenv("BENCH_FIRST") or "0")
local last = tonumber(os.getenv("BENCH_LAST") or "0")
local list_user = tonumber(os.getenv("BENCH_USER") or "0")
local limit = os.getenv("BENCH_LIMIT")
local cursor = os.getenv("BENCH_CURSOR")
local query_v2 = os.getenv("BENCH_QUERY") or ""
local if_none_match = os.getenv("BENCH_IF_NONE_MATCH")
local auth = os.getenv("BENCH_AUTH")
local run = os.getenv("BENCH_RUN") or "run"
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")

local counter = 0
function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end

local function owner(n)
  if n <= 100000 then return 1 end
  if n <= 101000 then return 2 end
  if n < 101011 then return 3 end
  return 4 + (n - 101011) % 9997
end

local function todo_id(n) return string.format("00000000-0000-4000-8000-%012x", n) end
local function user_id(k) return string.format("00000000-0000-4000-9000-%012x", k) end

local next_delete
local sent = 0
function init(args)
  math.randomseed(20261125 + thread_id)
  next_delete = first + thread_id
end

local json = { ["Content-Type"] = "application/json" }

local function as(user, extra)
  local headers = {}
  if auth then
    local name, value = auth:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  else
    headers["X-User-ID"] = user_id(user)
  end
  for k, v in pairs(extra or {}) do headers[k] = v end
  return headers
end

function request()
  if op == "constant" then
    return wrk.format("GET", "/constant")
  elseif op == "list" then
    local extra = if_none_match and { ["If-None-Match"] = if_none_match } or nil
    return wrk.format("GET", "/api/v1/todos", as(list_user, extra))
  elseif op == "page" then
    local query = "?limit=" .. limit .. (cursor and ("&cursor=" .. cursor) or "")
    return wrk.format("GET", "/api/v1/todos" .. query, as(list_user))
  elseif op == "v2page" then
    return wrk.format("GET", "/api/v2/todos?" .. query_v2, as(list_user))
  elseif op == "v2summary" then
    return wrk.format("GET", "/api/v2/todos/summary", as(list_user))
  elseif op == "mcp_create" or op == "mcp_list" then
    -- A tool call over streamable HTTP (stateless: no handshake), one JSON answer.
    local call
    if op == "mcp_create" then
      call = '{"name":"create_todo","arguments":{"title":"Benchmark todo","description":"made under load"}}'
    else
      call = '{"name":"list_todos","arguments":{}}'
    end
    local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' .. call .. '}'
    local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream" }
    local who = op == "mcp_list" and list_user or math.random(4, 10000)
    return wrk.format("POST", "/mcp", as(who, headers), body)
  elseif op == "create" or op == "create_once" then
    local body = '{"title":"Benchmark todo","description":"made under load"}'
    local headers = { ["Content-Type"] = "application/json" }
    if op == "create_once" then
      sent = sent + 1
      headers["Idempotency-Key"] = string.format("%s-%d-%d", run, thread_id, sent)
    end
    return wrk.format("POST", "/api/v1/todos", as(math.random(4, 10000), headers), body)
  end
  local n
  if op == "delete" then
    n = next_delete
    next_delete = next_delete + threads
  else
    n = math.random(first, last)
  end
  local path = "/api/v1/todos/" .. todo_id(n)
  if op == "get" then
    return wrk.format("GET", path, as(owner(n)))
  elseif op == "patch" then
    local body = string.format('{"title":"Renamed %d","is_completed":%s}', n, n % 2 == 0 and "true" or "false")
    return wrk.format("PATCH", path, as(owner(n), json), body)
  elseif op == "delete" then
    return wrk.format("DELETE", path, as(owner(n)))
  end
  error("unknown BENCH_OP " .. tostring(op))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non_2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end

-- Every statement the service sends, by the name it has in the code, rendered from
-- service/db.py and service/store/ by tests/test_statements.py (which fails when this
-- file and the code differ; REGENERATE_STATEMENTS=1 writes it anew).
--
-- Each is sent after service.db.REQUEST_CONTEXT (and, with TODO_RATE_LIMIT, a request's
-- first one after RATE_LIMIT_STEP too; with TODO_MAX_TODOS_PER_USER, a create after
-- QUOTA_CONTEXT), in one query string: one round trip, one transaction. A stream then
-- sends FETCH_STREAM until no row comes back, then CLOSE_STREAM, on the same
-- connection. %(name)s marks a value the driver puts in.

-- service.db.REQUEST_CONTEXT
SELECT set_config('role', 'todo_app', true),
       set_config('app.user_id', %(_request_user)s, true),
       set_config('statement_timeout', %(_request_timeout)s, true),
       set_config('TimeZone', 'UTC', true);

-- service.db.RATE_LIMIT_STEP
SELECT rate_limit_step(%(_rate_quota)s, %(_rate_window)s);

-- service.db.QUOTA_CONTEXT
SELECT set_config('app.todo_quota', %(_quota)s, true);

-- service.db.FETCH_STREAM
FETCH %(batch)s FROM stream;

-- service.db.CLOSE_STREAM
COMMIT;

-- service.store.todos.CREATE
WITH new_user AS (
    INSERT INTO users (id, issuer, subject)
    VALUES (%(user_id)s, %(issuer)s, %(subject)s)
    ON CONFLICT DO NOTHING
)
INSERT INTO todos (user_id, title, description)
VALUES (%(user_id)s, %(title)s, %(description)s)
RETURNING row_to_json(todos)::text, (extract(epoch FROM updated_at) * 1000000)::bigint, id;

-- service.store.todos.GET
SELECT row_to_json(todos)::text, (extract(epoch FROM updated_at) * 1000000)::bigint
FROM todos
WHERE user_id = %(user_id)s AND id = %(todo_id)s;

-- service.store.todos.PATCH
UPDATE todos
SET title = coalesce(%(title)s, title),
    is_completed = coalesce(%(is_completed)s, is_completed),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
RETURNING row_to_json(todos)::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version;

-- service.store.todos.PATCH_DESCRIPTION
UPDATE todos
SET title = coalesce(%(title)s, title),
    description = %(description)s,
    is_completed = coalesce(%(is_completed)s, is_completed),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
RETURNING row_to_json(todos)::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version;

-- service.store.todos.PATCH_IF
WITH written AS (
UPDATE todos
SET title = coalesce(%(title)s, title),
    is_completed = coalesce(%(is_completed)s, is_completed),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
  AND (extract(epoch FROM updated_at) * 1000000)::bigint = ANY (%(if_match)s::bigint[])
RETURNING row_to_json(todos)::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version
)
SELECT written.todo, written.version,
       EXISTS (SELECT 1 FROM todos WHERE user_id = %(user_id)s AND id = %(todo_id)s)
FROM (SELECT 1) AS one LEFT JOIN written ON true;

-- service.store.todos.PATCH_DESCRIPTION_IF
WITH written AS (
UPDATE todos
SET title = coalesce(%(title)s, title),
    description = %(description)s,
    is_completed = coalesce(%(is_completed)s, is_completed),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
  AND (extract(epoch FROM updated_at) * 1000000)::bigint = ANY (%(if_match)s::bigint[])
RETURNING row_to_json(todos)::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version
)
SELECT written.todo, written.version,
       EXISTS (SELECT 1 FROM todos WHERE user_id = %(user_id)s AND id = %(todo_id)s)
FROM (SELECT 1) AS one LEFT JOIN written ON true;

-- service.store.todos.REMOVE
DELETE FROM todos
WHERE user_id = %(user_id)s AND id = %(todo_id)s
RETURNING id;

-- service.store.todos.REMOVE_IF
WITH written AS (
DELETE FROM todos
WHERE user_id = %(user_id)s AND id = %(todo_id)s
  AND (extract(epoch FROM updated_at) * 1000000)::bigint = ANY (%(if_match)s::bigint[])
RETURNING id
)
SELECT written.id,
       EXISTS (SELECT 1 FROM todos WHERE user_id = %(user_id)s AND id = %(todo_id)s)
FROM (SELECT 1) AS one LEFT JOIN written ON true;

-- service.store.todos.LIST_VERSION
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0);

-- service.store.todos.LIST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       json_agg(t)::text,
       count(*)
FROM (
    SELECT id, user_id, title, description, is_completed, created_at, updated_at
    FROM todos
    WHERE user_id = %(user_id)s
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s
) AS t;

-- service.store.todos.PAGE
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.todo) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max((extract(epoch FROM (w.todo).created_at) * 1000000)::bigint)
           FILTER (WHERE w.n = %(limit)s),
       max((w.todo).id::text) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT t AS todo, row_number() OVER () AS n
    FROM (
        SELECT id, user_id, title, description, is_completed, created_at, updated_at
        FROM todos
        WHERE user_id = %(user_id)s
          AND (%(after_id)s::uuid IS NULL
               OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.keys.CLAIM
WITH claim AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)
    VALUES (
        %(user_id)s, %(key)s, %(fingerprint)s, %(todo_id)s,
        row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                     false, now(), now())::todos)::text
    )
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING todo_id, body
),
new_user AS (
    INSERT INTO users (id, issuer, subject)
    VALUES (%(user_id)s, %(issuer)s, %(subject)s)
    ON CONFLICT DO NOTHING
),
created AS (
    INSERT INTO todos (id, user_id, title, description)
    SELECT todo_id, %(user_id)s, %(title)s, %(description)s FROM claim
)
SELECT body, (extract(epoch FROM now()) * 1000000)::bigint, todo_id FROM claim;

-- service.store.keys.REPLAY
WITH released AS (
    DELETE FROM idempotency_keys
    WHERE user_id = %(user_id)s AND key = %(key)s AND created_at <= now() - interval '24 hours'
)
SELECT todo_id, body, (extract(epoch FROM created_at) * 1000000)::bigint, fingerprint
FROM idempotency_keys
WHERE user_id = %(user_id)s AND key = %(key)s AND created_at > now() - interval '24 hours';

-- service.store.keys.CLAIM, after a sweep
SELECT sweep_expired_idempotency_keys(256);
WITH claim AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)
    VALUES (
        %(user_id)s, %(key)s, %(fingerprint)s, %(todo_id)s,
        row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                     false, now(), now())::todos)::text
    )
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING todo_id, body
),
new_user AS (
    INSERT INTO users (id, issuer, subject)
    VALUES (%(user_id)s, %(issuer)s, %(subject)s)
    ON CONFLICT DO NOTHING
),
created AS (
    INSERT INTO todos (id, user_id, title, description)
    SELECT todo_id, %(user_id)s, %(title)s, %(description)s FROM claim
)
SELECT body, (extract(epoch FROM now()) * 1000000)::bigint, todo_id FROM claim;

-- service.store.todos.STREAM, through a cursor
BEGIN READ ONLY;
DECLARE stream NO SCROLL CURSOR FOR
SELECT row_to_json(t)::text, coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0)
FROM (
    SELECT id, user_id, title, description, is_completed, created_at, updated_at
    FROM todos
    WHERE user_id = %(user_id)s
    ORDER BY created_at DESC, id DESC
) AS t;

-- service.db.PING
SELECT 1;

-- service.db.CURSOR_KEY
SELECT secret FROM signing_keys WHERE purpose = 'cursor';

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
INSERT INTO todo_items (user_id, title, description, priority, due_at, tags,
                   title_folded, description_folded)
VALUES (%(user_id)s, %(title)s, %(description)s, %(priority)s, %(due_at)s, %(tags)s::text[],
        %(title_folded)s, %(description_folded)s)
RETURNING CASE WHEN %(v1)s
    THEN row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at)::todo_v1)
    ELSE row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at, priority, due_at, tags, completed_at)::todo_v2)
END::text, (extract(epoch FROM updated_at) * 1000000)::bigint, id;

-- service.store.todos.GET
SELECT CASE WHEN %(v1)s
    THEN row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at)::todo_v1)
    ELSE row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at, priority, due_at, tags, completed_at)::todo_v2)
END::text, (extract(epoch FROM updated_at) * 1000000)::bigint
FROM todo_items
WHERE user_id = %(user_id)s AND id = %(todo_id)s;

-- service.store.todos.PATCH
UPDATE todo_items
SET title = coalesce(%(title)s, title),
    is_completed = coalesce(%(is_completed)s, is_completed),
    priority = coalesce(%(priority)s::todo_priority, priority),
    due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
    tags = coalesce(%(tags)s::text[], tags),
    title_folded = coalesce(%(title_folded)s, title_folded),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
RETURNING CASE WHEN %(v1)s
    THEN row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at)::todo_v1)
    ELSE row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at, priority, due_at, tags, completed_at)::todo_v2)
END::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version;

-- service.store.todos.PATCH_DESCRIPTION
UPDATE todo_items
SET title = coalesce(%(title)s, title),
    description = %(description)s,
    description_folded = %(description_folded)s,
    is_completed = coalesce(%(is_completed)s, is_completed),
    priority = coalesce(%(priority)s::todo_priority, priority),
    due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
    tags = coalesce(%(tags)s::text[], tags),
    title_folded = coalesce(%(title_folded)s, title_folded),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
RETURNING CASE WHEN %(v1)s
    THEN row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at)::todo_v1)
    ELSE row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at, priority, due_at, tags, completed_at)::todo_v2)
END::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version;

-- service.store.todos.PATCH_IF
WITH written AS (
UPDATE todo_items
SET title = coalesce(%(title)s, title),
    is_completed = coalesce(%(is_completed)s, is_completed),
    priority = coalesce(%(priority)s::todo_priority, priority),
    due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
    tags = coalesce(%(tags)s::text[], tags),
    title_folded = coalesce(%(title_folded)s, title_folded),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
  AND (extract(epoch FROM updated_at) * 1000000)::bigint = ANY (%(if_match)s::bigint[])
RETURNING CASE WHEN %(v1)s
    THEN row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at)::todo_v1)
    ELSE row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at, priority, due_at, tags, completed_at)::todo_v2)
END::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version
)
SELECT written.todo, written.version,
       EXISTS (SELECT 1 FROM todo_items WHERE user_id = %(user_id)s AND id = %(todo_id)s)
FROM (SELECT 1) AS one LEFT JOIN written ON true;

-- service.store.todos.PATCH_DESCRIPTION_IF
WITH written AS (
UPDATE todo_items
SET title = coalesce(%(title)s, title),
    description = %(description)s,
    description_folded = %(description_folded)s,
    is_completed = coalesce(%(is_completed)s, is_completed),
    priority = coalesce(%(priority)s::todo_priority, priority),
    due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
    tags = coalesce(%(tags)s::text[], tags),
    title_folded = coalesce(%(title_folded)s, title_folded),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s
  AND (extract(epoch FROM updated_at) * 1000000)::bigint = ANY (%(if_match)s::bigint[])
RETURNING CASE WHEN %(v1)s
    THEN row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at)::todo_v1)
    ELSE row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at, priority, due_at, tags, completed_at)::todo_v2)
END::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version
)
SELECT written.todo, written.version,
       EXISTS (SELECT 1 FROM todo_items WHERE user_id = %(user_id)s AND id = %(todo_id)s)
FROM (SELECT 1) AS one LEFT JOIN written ON true;

-- service.store.todos.REMOVE
DELETE FROM todo_items
WHERE user_id = %(user_id)s AND id = %(todo_id)s
RETURNING id;

-- service.store.todos.REMOVE_IF
WITH written AS (
DELETE FROM todo_items
WHERE user_id = %(user_id)s AND id = %(todo_id)s
  AND (extract(epoch FROM updated_at) * 1000000)::bigint = ANY (%(if_match)s::bigint[])
RETURNING id
)
SELECT written.id,
       EXISTS (SELECT 1 FROM todo_items WHERE user_id = %(user_id)s AND id = %(todo_id)s)
FROM (SELECT 1) AS one LEFT JOIN written ON true;

-- service.store.todos.LIST_VERSION
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0);

-- service.store.todos.LIST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       json_agg(t)::text,
       count(*)
FROM (
    SELECT id, user_id, title, description, is_completed, created_at, updated_at
    FROM todo_items
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
        FROM todo_items
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
        CASE WHEN %(v1)s
            THEN row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                              false, now(), now())::todo_v1)
            ELSE row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                              false, now(), now(), %(priority)s, %(due_at)s,
                              %(tags)s::text[], NULL)::todo_v2)
        END::text
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
    INSERT INTO todo_items (id, user_id, title, description, priority, due_at, tags,
                       title_folded, description_folded)
    SELECT todo_id, %(user_id)s, %(title)s, %(description)s, %(priority)s, %(due_at)s,
           %(tags)s::text[], %(title_folded)s, %(description_folded)s
    FROM claim
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

-- service.store.lists.PAGE_NEWEST_FIRST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (NULL)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (created_at, id)
                  < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_OLDEST_FIRST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (NULL)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (created_at, id)
                  > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY created_at, id
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_TAGGED_NEWEST_FIRST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (NULL)::text AS kept
        FROM todo_tags JOIN todo_items ON todo_items.id = todo_tags.todo_id
        WHERE todo_tags.user_id = %(user_id)s AND todo_tags.tag = (%(tags)s::text[])[1]
          AND todo_items.user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(more_tags)s::text[] IS NULL OR tags @> %(more_tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (todo_tags.created_at, todo_tags.todo_id)
                  < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY todo_tags.created_at DESC, todo_tags.todo_id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_TAGGED_OLDEST_FIRST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (NULL)::text AS kept
        FROM todo_tags JOIN todo_items ON todo_items.id = todo_tags.todo_id
        WHERE todo_tags.user_id = %(user_id)s AND todo_tags.tag = (%(tags)s::text[])[1]
          AND todo_items.user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(more_tags)s::text[] IS NULL OR tags @> %(more_tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (todo_tags.created_at, todo_tags.todo_id)
                  > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY todo_tags.created_at, todo_tags.todo_id
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_SEARCHED_NEWEST_FIRST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (NULL)::text AS kept
        FROM todo_search_page(
            %(longest)s::text, %(words)s::text[], %(completed)s::boolean,
            %(priorities)s::todo_priority[], %(tags)s::text[], %(due_after)s::timestamptz,
            %(due_before)s::timestamptz, %(after_created_at)s::timestamptz,
            %(after_id)s::uuid, true, %(limit)s + 1
        ) AS found(todo_id) JOIN todo_items ON todo_items.id = found.todo_id
        WHERE todo_items.user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (created_at, id)
                  < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_SEARCHED_OLDEST_FIRST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (NULL)::text AS kept
        FROM todo_search_page(
            %(longest)s::text, %(words)s::text[], %(completed)s::boolean,
            %(priorities)s::todo_priority[], %(tags)s::text[], %(due_after)s::timestamptz,
            %(due_before)s::timestamptz, %(after_created_at)s::timestamptz,
            %(after_id)s::uuid, false, %(limit)s + 1
        ) AS found(todo_id) JOIN todo_items ON todo_items.id = found.todo_id
        WHERE todo_items.user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (created_at, id)
                  > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY created_at, id
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_DUE_SOONEST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, ((extract(epoch FROM due_at) * 1000000)::bigint)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (CASE WHEN due_at IS NULL THEN 'infinity'::timestamptz ELSE due_at END, created_at, id)
                  > (coalesce(%(after_key)s::timestamptz, 'infinity'::timestamptz), %(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY CASE WHEN due_at IS NULL THEN 'infinity'::timestamptz ELSE due_at END, created_at, id
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_DUE_LATEST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, ((extract(epoch FROM due_at) * 1000000)::bigint)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (CASE WHEN due_at IS NULL THEN '-infinity'::timestamptz ELSE due_at END, created_at, id)
                  < (coalesce(%(after_key)s::timestamptz, '-infinity'::timestamptz), %(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY CASE WHEN due_at IS NULL THEN '-infinity'::timestamptz ELSE due_at END DESC, created_at DESC, id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_PRIORITY_LOWEST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (priority)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (priority, created_at, id)
                  > (%(after_key)s::todo_priority, %(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY priority, created_at, id
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_PRIORITY_HIGHEST
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (priority)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (priority, created_at, id)
                  < (%(after_key)s::todo_priority, %(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY priority DESC, created_at DESC, id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_TITLE_A_Z
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (title)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (title_folded COLLATE "C", created_at, id)
                  > (%(after_key)s::text COLLATE "C", %(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY title_folded COLLATE "C", created_at, id
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.lists.PAGE_TITLE_Z_A
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, (title)::text AS kept
        FROM todo_items
        WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (%(after_id)s::uuid IS NULL
               OR (title_folded COLLATE "C", created_at, id)
                  < (%(after_key)s::text COLLATE "C", %(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY title_folded COLLATE "C" DESC, created_at DESC, id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w;

-- service.store.summary.SUMMARY
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       json_build_object(
           'total', count(*),
           'open', count(*) FILTER (WHERE NOT is_completed),
           'completed', count(*) FILTER (WHERE is_completed),
           'overdue', count(*) FILTER (WHERE NOT is_completed AND due_at < now()),
           'by_priority', json_build_object(
               'none', count(*) FILTER (WHERE NOT is_completed AND priority = 'none'),
               'low', count(*) FILTER (WHERE NOT is_completed AND priority = 'low'),
               'medium', count(*) FILTER (WHERE NOT is_completed AND priority = 'medium'),
               'high', count(*) FILTER (WHERE NOT is_completed AND priority = 'high')
           ),
           'by_tag', (
               SELECT coalesce(json_object_agg(tagged.tag, tagged.n ORDER BY tagged.tag),
                               '{}'::json)
               FROM (
                   SELECT todo_tags.tag, count(*) AS n
                   FROM todo_tags JOIN todo_items AS open_todo
                        ON open_todo.id = todo_tags.todo_id
                   WHERE todo_tags.user_id = %(user_id)s
                     AND open_todo.user_id = %(user_id)s
                     AND NOT open_todo.is_completed
                   GROUP BY todo_tags.tag
               ) AS tagged
           )
       )::text
FROM todo_items
WHERE user_id = %(user_id)s;

-- service.store.bulk.UPDATE
WITH target AS (
    SELECT id FROM todo_items
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (is_completed <> coalesce(%(is_completed)s::boolean, is_completed)
               OR priority <> coalesce(%(priority)s::todo_priority, priority)
               OR (%(sets_due_at)s AND due_at IS DISTINCT FROM %(due_at)s::timestamptz))
    ORDER BY id
    FOR NO KEY UPDATE
),
condition AS (
    SELECT set_config('app.if_list_version', %(if_list_version)s, true)
    FROM (SELECT count(*) FROM target) AS locked
),
written AS (
    UPDATE todo_items
    SET is_completed = coalesce(%(is_completed)s::boolean, is_completed),
        priority = coalesce(%(priority)s::todo_priority, priority),
        due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
        updated_at = greatest(now(), updated_at + interval '1 microsecond')
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (is_completed <> coalesce(%(is_completed)s::boolean, is_completed)
               OR priority <> coalesce(%(priority)s::todo_priority, priority)
               OR (%(sets_due_at)s AND due_at IS DISTINCT FROM %(due_at)s::timestamptz))
      AND EXISTS (SELECT 1 FROM condition)
    RETURNING 1
)
SELECT '{"updated":' || count(*) || '}' FROM written;

-- service.store.bulk.UPDATE_KEYED
WITH target AS (
    SELECT id FROM todo_items
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (is_completed <> coalesce(%(is_completed)s::boolean, is_completed)
               OR priority <> coalesce(%(priority)s::todo_priority, priority)
               OR (%(sets_due_at)s AND due_at IS DISTINCT FROM %(due_at)s::timestamptz))
    ORDER BY id
    FOR NO KEY UPDATE
),
claim AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)
    SELECT %(user_id)s, %(key)s, %(fingerprint)s, NULL, '{"updated":' || count(*) || '}'
    FROM target
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING body
),
condition AS (
    SELECT set_config('app.if_list_version', %(if_list_version)s, true) FROM claim
),
written AS (
    UPDATE todo_items
    SET is_completed = coalesce(%(is_completed)s::boolean, is_completed),
        priority = coalesce(%(priority)s::todo_priority, priority),
        due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
        updated_at = greatest(now(), updated_at + interval '1 microsecond')
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
          AND (is_completed <> coalesce(%(is_completed)s::boolean, is_completed)
               OR priority <> coalesce(%(priority)s::todo_priority, priority)
               OR (%(sets_due_at)s AND due_at IS DISTINCT FROM %(due_at)s::timestamptz))
      AND EXISTS (SELECT 1 FROM condition)
    RETURNING 1
)
SELECT body FROM claim;

-- service.store.bulk.DELETE
WITH target AS (
    SELECT id FROM todo_items
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
    ORDER BY id
    FOR UPDATE
),
condition AS (
    SELECT set_config('app.if_list_version', %(if_list_version)s, true)
    FROM (SELECT count(*) FROM target) AS locked
),
written AS (
    DELETE FROM todo_items
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
      AND EXISTS (SELECT 1 FROM condition)
    RETURNING 1
)
SELECT '{"deleted":' || count(*) || '}' FROM written;

-- service.store.bulk.DELETE_KEYED
WITH target AS (
    SELECT id FROM todo_items
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
    ORDER BY id
    FOR UPDATE
),
claim AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)
    SELECT %(user_id)s, %(key)s, %(fingerprint)s, NULL, '{"deleted":' || count(*) || '}'
    FROM target
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING body
),
condition AS (
    SELECT set_config('app.if_list_version', %(if_list_version)s, true) FROM claim
),
written AS (
    DELETE FROM todo_items
    WHERE user_id = %(user_id)s
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))
      AND EXISTS (SELECT 1 FROM condition)
    RETURNING 1
)
SELECT body FROM claim;

-- service.store.keys.CLAIM, after a sweep
SELECT sweep_expired_idempotency_keys(256);
WITH claim AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)
    VALUES (
        %(user_id)s, %(key)s, %(fingerprint)s, %(todo_id)s,
        CASE WHEN %(v1)s
            THEN row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                              false, now(), now())::todo_v1)
            ELSE row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                              false, now(), now(), %(priority)s, %(due_at)s,
                              %(tags)s::text[], NULL)::todo_v2)
        END::text
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
    INSERT INTO todo_items (id, user_id, title, description, priority, due_at, tags,
                       title_folded, description_folded)
    SELECT todo_id, %(user_id)s, %(title)s, %(description)s, %(priority)s, %(due_at)s,
           %(tags)s::text[], %(title_folded)s, %(description_folded)s
    FROM claim
)
SELECT body, (extract(epoch FROM now()) * 1000000)::bigint, todo_id FROM claim;

-- service.store.todos.STREAM, through a cursor
BEGIN READ ONLY;
DECLARE stream NO SCROLL CURSOR FOR
SELECT row_to_json(t)::text, coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0)
FROM (
    SELECT id, user_id, title, description, is_completed, created_at, updated_at
    FROM todo_items
    WHERE user_id = %(user_id)s
    ORDER BY created_at DESC, id DESC
) AS t;

-- service.db.PING
SELECT 1;

-- service.db.CURSOR_KEY
SELECT secret FROM signing_keys WHERE purpose = 'cursor';

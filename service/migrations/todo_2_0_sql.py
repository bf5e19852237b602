"""The SQL of migration 0007 (versions/0007_the_todo_of_2_0.py) that is text alone: the
case fold, the tags' table with its policy and triggers, and the trigger that keeps the
2.0 members. Kept beside the migration rather than in it, and, like it, never changed
once released: a later schema change is a migration of its own."""

import sys


def fold_function() -> str:
    """`todo_fold(text)`: str.casefold in SQL. ASCII text is lower-cased as such; other
    text has each character that folds to several replaced, then each that folds to one
    translated. Every fold is a fixed point of the fold, so the order cannot matter."""
    single_from, single_to, several = [], [], []
    for point in range(1, sys.maxunicode + 1):
        if 0xD800 <= point <= 0xDFFF:
            continue
        character = chr(point)
        folded = character.casefold()
        if folded == character:
            continue
        if len(folded) == 1:
            single_from.append(character)
            single_to.append(folded)
        else:
            several.append((character, folded))
    replaced = "value"
    for character, folded in several:
        replaced = f"replace({replaced}, '{character}', '{folded}')"
    return f"""
        CREATE OR REPLACE FUNCTION todo_fold(value text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fold$
        SELECT CASE
            WHEN octet_length(value) = char_length(value) THEN lower(value COLLATE "C")
            ELSE translate({replaced}, '{"".join(single_from)}', '{"".join(single_to)}')
        END
        $fold$
    """


CALLER = "NULLIF(current_setting('app.user_id', true), '')::uuid"

# A todo's tags, one row each, in the list's order per (user, tag). created_at is the
# todo's, which never changes. The foreign key's index is its own: deleting a todo
# finds its tags by it.
TODO_TAGS = [
    """
    CREATE TABLE IF NOT EXISTS todo_tags (
        user_id uuid NOT NULL,
        tag text NOT NULL,
        created_at timestamptz NOT NULL,
        todo_id uuid NOT NULL REFERENCES todo_items (id) ON DELETE CASCADE,
        PRIMARY KEY (user_id, tag, created_at, todo_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS todo_tags_todo ON todo_tags (todo_id)",
    # A tagged page reads 50 of a tag's rows in order. The planner, which cannot know
    # that every row of the caller's tags joins a todo of the caller's, expects a tenth
    # of them to, and planned a parallel scan: 25 ms where the serial one takes 1.
    "ALTER TABLE todo_tags SET (parallel_workers = 0)",
    "GRANT SELECT, INSERT, DELETE ON todo_tags TO todo_app",
    "ALTER TABLE todo_tags ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE todo_tags FORCE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS todo_tags_of_the_caller ON todo_tags",
    f"CREATE POLICY todo_tags_of_the_caller ON todo_tags"
    f" USING (user_id = {CALLER}) WITH CHECK (user_id = {CALLER})",
    """
    CREATE OR REPLACE FUNCTION todos_keep_tags() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            DELETE FROM todo_tags
            WHERE user_id = OLD.user_id AND todo_id = OLD.id AND tag <> ALL (NEW.tags);
        END IF;
        INSERT INTO todo_tags (user_id, tag, created_at, todo_id)
        SELECT NEW.user_id, tag, NEW.created_at, NEW.id FROM unnest(NEW.tags) AS tag
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END
    $$
    """,
]
# Only a write that has or changes tags calls the function: a 1.x build never does.
KEEP_TAGS_TRIGGERS = [
    "CREATE OR REPLACE TRIGGER keep_tags_on_insert AFTER INSERT ON todo_items FOR EACH ROW"
    " WHEN (NEW.tags <> '{}') EXECUTE FUNCTION todos_keep_tags()",
    "CREATE OR REPLACE TRIGGER keep_tags_on_update AFTER UPDATE OF tags ON todo_items"
    " FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags) EXECUTE FUNCTION todos_keep_tags()",
]

KEEP_2_0_MEMBERS = """
    CREATE OR REPLACE FUNCTION todos_keep_2_0_members() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT NEW.is_completed THEN
            NEW.completed_at := NULL;
        ELSIF TG_OP = 'INSERT' OR NOT OLD.is_completed THEN
            NEW.completed_at := NEW.updated_at;
        ELSE
            -- Completed before and still: the first time stays. One completed before
            -- 2.0 and not yet filled in gets its updated_at of then.
            NEW.completed_at := coalesce(OLD.completed_at, NEW.completed_at, OLD.updated_at);
        END IF;
        -- A write that changed a text but not its fold came from a build that knows
        -- nothing of folds.
        IF TG_OP = 'INSERT' THEN
            NEW.title_folded := coalesce(NEW.title_folded, todo_fold(NEW.title));
            NEW.description_folded :=
                coalesce(NEW.description_folded, todo_fold(coalesce(NEW.description, '')));
        ELSE
            IF NEW.title IS DISTINCT FROM OLD.title
               AND NEW.title_folded IS NOT DISTINCT FROM OLD.title_folded THEN
                NEW.title_folded := todo_fold(NEW.title);
            END IF;
            IF NEW.description IS DISTINCT FROM OLD.description
               AND NEW.description_folded IS NOT DISTINCT FROM OLD.description_folded THEN
                NEW.description_folded := todo_fold(coalesce(NEW.description, ''));
            END IF;
        END IF;
        RETURN NEW;
    END
    $$
"""

"""Text as the contract holds it (v1): "Strings may hold any Unicode text except U+0000 and
unpaired surrogates ... Lengths count characters, not bytes. Text is stored and returned
exactly as sent: no trimming, no normalization." A create that changes what it was sent
breaks FR-008, an update FR-011; a length counted otherwise breaks the length's own
requirement (FR-017, FR-018)."""

import json
from typing import Any

from todo_conformance.checks import (
    ONE,
    TODOS,
    Context,
    check,
    expect,
    expect_invalid,
    op,
    schema,
    todo_path,
)
from todo_conformance.target import Exchange

# Where the contract says it.
TEXT = "#/info/description"
# One text in spellings that Unicode normalization would change, each a different string:
# decomposed (NFD) and composed (NFC) letters; signs that NFC maps to letters (ANGSTROM
# SIGN, OHM SIGN); conjoining jamo that NFC composes into a syllable; and what NFKC folds
# (a ligature, full-width letters, a Roman numeral, a superscript).
DECOMPOSED = "Cafe\u0301 A\u030a"
COMPOSED = "Caf\u00e9 \u00c5"
SINGLETONS = "\u212b \u2126"
JAMO = "\u1100\u1161\u11a8"
COMPATIBLE = "\ufb01 \uff21\uff42 \u2168 x\u00b2"
SPELLINGS = " ".join((DECOMPOSED, COMPOSED, SINGLETONS, JAMO, COMPATIBLE))
# Lengths at their limits, in letters of two bytes and of four (UTF-16: two units each).
WIDE = (("\u00e9", "two-byte letters"), ("\U0001f389", "four-byte emoji"))


def _kept(answer: Exchange, sent: dict[str, Any], what: str) -> None:
    got = answer.json_or_none()
    for name, value in sent.items():
        back = got.get(name) if isinstance(got, dict) else None
        expect(back == value, f"{what}: {name} {_difference(value, back)}", answer)


def _difference(sent: str, back: Any) -> str:
    """Where the text came back changed, shown with escapes."""
    if not isinstance(back, str):
        return f"came back as {back!a}"
    pairs = enumerate(zip(sent, back, strict=False))
    at = next((n for n, (a, b) in pairs if a != b), min(len(sent), len(back)))
    return (
        f"changed from character {at}: sent {sent[at : at + 8]!a}, came back {back[at : at + 8]!a}"
        f" ({len(sent)} characters sent, {len(back)} back)"
    )


@check("FR-008", clauses=(TEXT, op("POST", TODOS, 201), schema("Title"), schema("Description")))
def a_create_keeps_text_exactly_as_sent(ctx: Context) -> None:
    """A create stores and returns title and description exactly as sent: spaces, tabs, quotes,
    emoji, and decomposed, composed and compatibility spellings, none normalized"""
    sent = {
        "title": ctx.title(f'  \U0001f389 {SPELLINGS}\t"q" \\') + "  ",
        "description": f'line\nbreak "quoted" \\ {SPELLINGS}  ',
    }
    made = ctx.send("POST", TODOS, ctx.main, json=sent)
    todo = ctx.created(made)
    expect(todo is not None, f"a create of such text answered {made.status}", made)
    assert todo is not None
    _kept(made, sent, "the create's answer")
    _kept(ctx.read(ctx.main, todo["id"]), sent, "read back")
    # A surrogate pair escaped in JSON is one character, like any other.
    mark = json.dumps(ctx.title("")).encode()[:-1]
    paired = ctx.send(
        "POST",
        TODOS,
        ctx.main,
        body=b'{"title": ' + mark + b' \\ud83c\\udf89"}',
        headers=[("Content-Type", "application/json")],
    )
    answered = (paired.json_or_none() or {}).get("title", "")
    expect(
        ctx.status(paired) == 201 and answered.endswith(" \U0001f389"), "an escaped pair", paired
    )


@check("FR-011", clauses=(TEXT, op("PATCH", ONE, 200), schema("TodoUpdate")))
def an_update_keeps_text_exactly_as_sent(ctx: Context) -> None:
    """An update stores and returns title and description exactly as sent: decomposed, composed and
    compatibility spellings, none normalized"""
    todo = ctx.create(ctx.main, "plain", description="plain")
    sent = {
        "title": ctx.title(f"{COMPATIBLE} {JAMO} {SINGLETONS} {COMPOSED} {DECOMPOSED}"),
        "description": f"{DECOMPOSED}\n{COMPATIBLE}\t{SINGLETONS} ",
    }
    changed = ctx.send("PATCH", todo_path(todo["id"]), ctx.main, json=sent)
    expect(changed.status == 200, f"an update of such text answered {changed.status}", changed)
    _kept(changed, sent, "the update's answer")
    _kept(ctx.read(ctx.main, todo["id"]), sent, "read back")


@check("FR-017", clauses=(schema("Title"), TEXT))
def a_title_has_at_most_255_characters(ctx: Context) -> None:
    """A title of 255 characters is kept, counted in characters, not bytes or UTF-16 units
    (two-byte letters, four-byte emoji); 256 is 422 naming title, on create and update"""
    prefix = ctx.title()
    first = None
    for letter, what in WIDE:
        longest = prefix + letter * (255 - len(prefix))
        answer = ctx.send("POST", TODOS, ctx.main, json={"title": longest})
        todo = ctx.created(answer)
        expect(
            todo is not None,
            f"a 255-character title of {what} ({len(longest.encode())} bytes) was refused"
            f" with {answer.status}: lengths count characters",
            answer,
        )
        assert todo is not None
        _kept(answer, {"title": longest}, f"a 255-character title of {what}")
        first = first or todo
        too_long = ctx.send("POST", TODOS, ctx.main, json={"title": longest + letter})
        expect_invalid(too_long, "title", f"a 256-character title of {what} on create")
        changed = ctx.send(
            "PATCH", todo_path(todo["id"]), ctx.main, json={"title": longest + letter}
        )
        expect_invalid(changed, "title", f"a 256-character title of {what} on update")
    # And an update to the limit, in the other width.
    assert first is not None
    swapped = prefix + WIDE[1][0] * (255 - len(prefix))
    answer = ctx.send("PATCH", todo_path(first["id"]), ctx.main, json={"title": swapped})
    expect(answer.status == 200, f"an update to 255 emoji answered {answer.status}", answer)
    _kept(answer, {"title": swapped}, "an update to a 255-character title")


@check("FR-018", clauses=(schema("Description"), TEXT))
def a_description_has_at_most_2000_characters(ctx: Context) -> None:
    """A description of 2,000 characters is kept, counted in characters (two-byte letters,
    four-byte emoji); 2,001 is 422 naming description"""
    kept = None
    for letter, what in WIDE:
        longest = letter * 2000
        answer = ctx.send(
            "POST", TODOS, ctx.main, json={"title": ctx.title(), "description": longest}
        )
        kept = ctx.created(answer)
        expect(
            kept is not None,
            f"a 2,000-character description of {what} was refused with {answer.status}",
            answer,
        )
        _kept(answer, {"description": longest}, f"a 2,000-character description of {what}")
        made = ctx.send(
            "POST", TODOS, ctx.main, json={"title": ctx.title(), "description": longest + letter}
        )
        expect_invalid(made, "description", f"a 2,001-character description of {what}")
    assert kept is not None
    changed = ctx.send("PATCH", todo_path(kept["id"]), ctx.main, json={"description": 5})
    expect_invalid(changed, "description", "description: 5")

"""Index terms: character bigrams for CJK text, whole words for everything else.

Why bigrams: a segmentation-based index misses about 18% of substring queries (2-character
words inside longer tokens, strings across word boundaries). Indexing every overlapping pair of
characters finds every Chinese substring of two or more characters with a phrase query.

Each run of CJK characters "ABCD" gives the tokens AB BC CD and then the run's last character
D as a unigram. The unigram makes single-character queries possible (every character is then
the first character of some token, so the prefix query `D*` finds it) and separates runs: a
phrase of bigrams can only match inside one run, so for CJK-only terms the phrase match *is*
the substring match, with no second check needed.

Text given here is already normalised (Simplified, half-width, lower case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Han (incl. extensions and compatibility), kana and hangul are all written without spaces,
# so all are indexed by bigrams.
_CJK = (
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\U00020000-\U0002ebef\U00030000-\U0003134f"
)
_RUN = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)")
_CJK_ONLY = re.compile(rf"[{_CJK}]+")

# PostgreSQL limits: positions above 16383 collapse onto 16383 and a lexeme keeps at most 256
# positions; see docs/search.md for what that means for very long articles.
PG_MAX_POSITION = 16383
PG_MAX_POSITIONS_PER_LEXEME = 255


def index_tokens(text: str) -> list[str]:
    """The token stream of a normalised text, in order."""
    tokens: list[str] = []
    append = tokens.append
    for match in _RUN.finditer(text):
        run = match.group(1)
        if run is None:
            append(match.group(2))
            continue
        for i in range(len(run) - 1):
            append(run[i : i + 2])
        append(run[-1])
    return tokens


def index_body(text: str) -> str:
    """Tokens joined by spaces, the form the SQLite FTS5 table is given."""
    return " ".join(index_tokens(text))


def tsvector_literal(title: str, text: str) -> str:
    """A PostgreSQL tsvector in its input syntax, with positions.

    Built here rather than by `to_tsvector` so that PostgreSQL sees exactly the same tokens as
    SQLite, whatever the server's locale. The body starts one position after the title ends so
    that no phrase can span the two.
    """
    positions: dict[str, list[int]] = {}
    pos = 0
    for part in (title, text):
        for token in index_tokens(part):
            pos += 1
            if pos > PG_MAX_POSITION:
                break
            slot = positions.get(token)
            if slot is None:
                positions[token] = [pos]
            elif len(slot) < PG_MAX_POSITIONS_PER_LEXEME:
                slot.append(pos)
        pos += 1
    return " ".join(f"'{tok}':{','.join(map(str, ps))}" for tok, ps in positions.items())


@dataclass(frozen=True, slots=True)
class TermPattern:
    """How one search term is looked up: a phrase of index tokens, maybe ending in a prefix.

    `needs_check` is True when the phrase can match where the term's exact string is absent
    (terms with spaces or mixed scripts); the caller then also checks for the substring.
    """

    tokens: tuple[str, ...]
    prefix_last: bool
    needs_check: bool
    words_only: bool


def term_pattern(term: str) -> TermPattern | None:
    """Compile one normalised term; None when it has nothing indexable (only punctuation).

    A trailing `*` asks for a prefix (`protest*` finds protesters); on CJK text every term is a
    substring match already, so there it changes nothing.
    """
    if term.endswith("*") and term.rstrip("*"):
        base = term_pattern(term.rstrip("*"))
        if base is None:
            return None
        return TermPattern(
            tokens=base.tokens,
            prefix_last=True,
            needs_check=base.needs_check,
            words_only=base.words_only,
        )
    runs = [(m.group(1) is not None, m.group(0)) for m in _RUN.finditer(term)]
    if not runs:
        return None
    tokens: list[str] = []
    prefix_last = False
    last = len(runs) - 1
    for i, (is_cjk, run) in enumerate(runs):
        if not is_cjk:
            tokens.append(run)
            continue
        if len(run) == 1:
            if i == last:
                # The character may be followed by more CJK in the text: any token starting
                # with it (a bigram or the run-final unigram) will do.
                tokens.append(run)
                prefix_last = True
            else:
                # Followed by a non-CJK character, so it ends its run in the text too.
                tokens.append(run)
            continue
        tokens.extend(run[j : j + 2] for j in range(len(run) - 1))
        if i != last:
            tokens.append(run[-1])
    cjk_only = len(runs) == 1 and runs[0][0] and _CJK_ONLY.fullmatch(term) is not None
    words_only = all(not is_cjk for is_cjk, _ in runs) and len(runs) == 1 and runs[0][1] == term
    return TermPattern(
        tokens=tuple(tokens),
        prefix_last=prefix_last,
        needs_check=not (cjk_only or words_only),
        words_only=words_only,
    )

"""The search query syntax: terms, "phrases", AND / OR / NOT, parentheses.

    舆情 监测            both terms (AND is implied between terms)
    "hong kong"          an exact phrase
    医院 OR 卫生院        either
    医院 -广告            NOT: the second must be absent (also `NOT 广告`)
    (医院 | 卫生院) 投诉   grouping; `|` is OR

Precedence as in common listening tools: NOT binds tightest, then AND, then OR. This is the
search-box subset of the topic language (see docs/search.md); a parse error names the
position and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUERY_CHARS = 1000
MAX_TERMS = 64


class QueryError(ValueError):
    """A query that cannot be understood; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    phrase: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Not | And | Or

_TOKEN = re.compile(r'\s+|"[^"]*"?|\(|\)|\||-(?=\S)|\+(?=\S)|[^\s()"|]+')


@dataclass(slots=True)
class _Tok:
    kind: str  # TERM PHRASE LP RP OR AND NOT
    text: str
    pos: int


def _lex(query: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _TOKEN.finditer(query):
        raw, pos = m.group(0), m.start() + 1
        if raw.isspace():
            continue
        if raw.startswith('"'):
            if len(raw) < 2 or not raw.endswith('"'):
                raise QueryError(f'Unclosed quotation mark at position {pos}: add the closing ".')
            toks.append(_Tok("PHRASE", raw[1:-1], pos))
        elif raw == "(":
            toks.append(_Tok("LP", raw, pos))
        elif raw == ")":
            toks.append(_Tok("RP", raw, pos))
        elif raw in ("|", "OR"):
            toks.append(_Tok("OR", raw, pos))
        elif raw == "AND" or raw == "+":
            toks.append(_Tok("AND", raw, pos))
        elif raw in ("-", "NOT"):
            toks.append(_Tok("NOT", raw, pos))
        else:
            toks.append(_Tok("TERM", raw, pos))
    return toks


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = _lex(query)
        self.i = 0
        self.terms = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            raise QueryError("The query is empty: type a word or phrase to look for.")
        node = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise QueryError(
                f"Unexpected {tok.text!r} at position {tok.pos}: expected a term or the end."
            )
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.take()
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self) -> Node:
        children = [self.unary()]
        while (tok := self.peek()) is not None and tok.kind not in ("OR", "RP"):
            if tok.kind == "AND":
                self.take()
            children.append(self.unary())
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise QueryError(
                f"The query ends too early at position {len(self.query) + 1}: expected a term."
            )
        if tok.kind == "NOT":
            self.take()
            return Not(self.unary())
        if tok.kind == "AND":
            self.take()
            return self.unary()
        return self.primary()

    def primary(self) -> Node:
        tok = self.take() if self.peek() is not None else None
        if tok is None:
            raise QueryError("The query ends too early: expected a term.")
        if tok.kind == "LP":
            node = self.or_expr()
            close = self.peek()
            if close is None or close.kind != "RP":
                raise QueryError(
                    f"Parenthesis opened at position {tok.pos} is not closed: add ')'."
                )
            self.take()
            return node
        if tok.kind in ("TERM", "PHRASE"):
            if not tok.text.strip():
                raise QueryError(
                    f"Empty phrase at position {tok.pos}: put words between the quotes."
                )
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise QueryError(f"Too many terms (more than {MAX_TERMS}): split the query.")
            return Term(tok.text, phrase=tok.kind == "PHRASE")
        raise QueryError(f"Unexpected {tok.text!r} at position {tok.pos}: expected a term.")


def parse_query(query: str) -> Node:
    """Parse a search query into a tree; raises QueryError with a message for a person."""
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(
            f"The query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}."
        )
    return _Parser(query).parse()

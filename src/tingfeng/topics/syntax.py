"""The topic query language (监测方案的检索式): tokenizer, syntax tree, parser, rendering.

Grammar, loosest binding first (see docs/topics.md for the reference)::

    query   := or
    or      := and (("OR" | "|") and)*
    and     := unary (["AND"] unary)*            adjacent operands mean AND
    unary   := ("NOT" | "-") unary | "+" unary | near
    near    := primary [("NEAR/n" | "ONEAR/n") primary]
    primary := term | "phrase" | "(" or ")" | field ":" (term | "phrase" | "(" or ")")

Terms and phrases are normalised with `tingfeng.analyze.normalize.normalize` when parsed, so
the tree holds exactly the strings that are looked for in normalised documents.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

from tingfeng.analyze.normalize import normalize

__all__ = [
    "CJK_CLASS",
    "FIELDS",
    "LEVELS",
    "MAX_DEPTH",
    "MAX_NEAR",
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "METADATA_FIELDS",
    "SENTIMENTS",
    "TEXT_FIELDS",
    "And",
    "Field",
    "Filter",
    "Near",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "Term",
    "has_cjk",
    "is_word_char",
    "iter_nodes",
    "parse_query",
    "site_host",
    "to_text",
]

MAX_QUERY_CHARS = 4_000
MAX_TERMS = 300
MAX_DEPTH = 32
MAX_NEAR = 1_000

TEXT_FIELDS = ("title",)
METADATA_FIELDS = ("site", "source", "author", "lang", "region", "category", "sentiment", "level")
FIELDS = TEXT_FIELDS + METADATA_FIELDS

SENTIMENTS: dict[str, str] = {
    "positive": "positive",
    "neutral": "neutral",
    "negative": "negative",
    "正面": "positive",
    "积极": "positive",
    "中性": "neutral",
    "中立": "neutral",
    "负面": "negative",
    "消极": "negative",
}
LEVELS: dict[str, str] = {
    "general": "general",
    "serious": "serious",
    "major": "major",
    "critical": "critical",
    "一般": "general",
    "较大": "serious",
    "重大": "major",
    "特大": "critical",
    "iv": "general",
    "iii": "serious",
    "ii": "major",
    "i": "critical",
}
_LANG_ALIASES = {"中文": "zh", "汉语": "zh", "英文": "en", "英语": "en"}
_LANG_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*")

# Scripts written without spaces between words: a term in them matches as a plain substring.
# Full-width and half-width forms are not listed: normalize() folds them first.
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Suzhou numerals
    (0x3038, 0x303C),
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x318F),  # Bopomofo, Hangul compatibility Jamo
    (0x31A0, 0x31BF),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),
    (0xAC00, 0xD7FF),  # Hangul syllables and Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x323AF),  # CJK extensions B-H, compatibility supplement
)
CJK_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _CJK_RANGES)
"""The CJK ranges as the inside of a regular-expression character class."""
_CJK_RE = re.compile(f"[{CJK_CLASS}]")
# A "word character" is a letter or digit outside the CJK scripts (Python's str.isalnum(),
# which is also what `\w` means in `re`, minus the underscore).
_WORD_RE = re.compile(f"[^\\W_{CJK_CLASS}]")


def has_cjk(text: str) -> bool:
    """Whether `text` has a character of a script written without spaces (Chinese, kana, ...)."""
    return _CJK_RE.search(text) is not None


def is_word_char(char: str) -> bool:
    """A letter or digit that is not CJK: where English-style word boundaries apply."""
    return _WORD_RE.match(char) is not None


# --- Syntax tree ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A word or phrase, normalised; `wildcard`: `text` is a prefix (`protest*`)."""

    text: str
    wildcard: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Near:
    """`left NEAR/distance right`; `ordered` for ONEAR. Operands: a Term or an Or of Terms."""

    left: Node
    right: Node
    distance: int
    ordered: bool = False


@dataclass(frozen=True, slots=True)
class Field:
    """A sub-query matched against another text of the document (`title:(...)`)."""

    name: str
    child: Node


@dataclass(frozen=True, slots=True)
class Filter:
    """A metadata condition (`site:weibo.com`); `value` is canonical (see `_canonical_value`)."""

    name: str
    value: str


Node = Term | Not | And | Or | Near | Field | Filter


def iter_nodes(node: Node):
    """Every node of the tree, depth first, parents before children."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, And | Or):
            stack.extend(reversed(current.children))
        elif isinstance(current, Not | Field):
            stack.append(current.child)
        elif isinstance(current, Near):
            stack.extend((current.right, current.left))


# --- Errors -----------------------------------------------------------------------------------


class QuerySyntaxError(ValueError):
    """A query that cannot be parsed; `position` is a 0-based character offset in the query."""

    def __init__(self, position: int, detail: str, expected: str = "") -> None:
        self.position = position
        self.detail = detail
        self.expected = expected
        super().__init__(f"at character {position}: {detail}")


# --- Tokenizer --------------------------------------------------------------------------------

_OPEN_PAREN = "(（"
_CLOSE_PAREN = ")）"
_PIPE = "|｜"
_OPEN_QUOTE = '"＂“'
_CLOSE_QUOTE = '"＂“”'
_SPECIAL = frozenset(_OPEN_PAREN + _CLOSE_PAREN + _PIPE + _CLOSE_QUOTE)
_FIELD_RE = re.compile(r"([A-Za-z]+)[:：]")
_NEAR_RE = re.compile(r"(O?NEAR)(?:/(.*))?")


class _Tok(NamedTuple):
    kind: str  # TERM PHRASE LP RP AND OR NOT NEAR FIELD PLUS MINUS EOF
    pos: int
    end: int
    text: str = ""
    distance: int = 0


def _describe(tok: _Tok) -> str:
    if tok.kind == "EOF":
        return "end of query"
    if tok.kind in ("TERM", "NEAR", "AND", "OR", "NOT"):
        return f'"{tok.text}"' if tok.kind == "TERM" else tok.text
    if tok.kind == "PHRASE":
        return f'the phrase "{tok.text}"'
    if tok.kind == "FIELD":
        return f'"{tok.text}:"'
    return f'"{tok.text}"'


def _tokenize(query: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char.isspace():
            i += 1
        elif char in _OPEN_PAREN:
            tokens.append(_Tok("LP", i, i + 1, char))
            i += 1
        elif char in _CLOSE_PAREN:
            tokens.append(_Tok("RP", i, i + 1, char))
            i += 1
        elif char in _PIPE:
            tokens.append(_Tok("OR", i, i + 1, "|"))
            i += 1
        elif char in _OPEN_QUOTE:
            i = _read_phrase(query, i, tokens)
        elif char == "”":
            raise QuerySyntaxError(i, "a closing quote ” without an opening one", "a term")
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in _SPECIAL:
                _check_char(query, j)
                j += 1
            _read_word(query, i, j, tokens)
            i = j
    tokens.append(_Tok("EOF", n, n))
    return tokens


def _check_char(query: str, i: int) -> None:
    if unicodedata.category(query[i]) == "Cc":
        raise QuerySyntaxError(
            i, f"control character U+{ord(query[i]):04X} is not allowed", "printable text"
        )


def _read_phrase(query: str, start: int, tokens: list[_Tok]) -> int:
    """Read `"..."` from `start` (the opening quote); `\\"` and `\\\\` are escapes."""
    chars: list[str] = []
    j, n = start + 1, len(query)
    while j < n:
        char = query[j]
        if char == "\\" and j + 1 < n and query[j + 1] in _CLOSE_QUOTE + "\\":
            chars.append(query[j + 1])
            j += 2
            continue
        if char in _CLOSE_QUOTE:
            tokens.append(_Tok("PHRASE", start, j + 1, "".join(chars)))
            return j + 1
        if not char.isspace():
            _check_char(query, j)
        chars.append(char)
        j += 1
    raise QuerySyntaxError(start, "unclosed quote: a phrase needs a closing quote", '"')


def _read_word(query: str, start: int, end: int, tokens: list[_Tok]) -> None:
    """Split one run of non-space, non-special characters into sign, keyword, field, term."""
    word = query[start:end]
    k = 0
    while k < len(word) and word[k] in "+-":
        tokens.append(
            _Tok("PLUS" if word[k] == "+" else "MINUS", start + k, start + k + 1, word[k])
        )
        k += 1
    rest = word[k:]
    if not rest:
        # A bare sign must be glued to a group or a phrase: "-(a OR b)", -"a b".
        if end < len(query) and query[end] in _OPEN_PAREN + _OPEN_QUOTE:
            return
        raise QuerySyntaxError(
            start + k - 1,
            f'expected a term, a phrase or "(" right after "{word[k - 1]}" (no space)',
            'a term, a phrase or "("',
        )
    pos = start + k
    if k == 0:
        if rest in ("AND", "OR", "NOT"):
            tokens.append(_Tok(rest, pos, end, rest))
            return
        near = _NEAR_RE.fullmatch(rest)
        if near is not None:
            tokens.append(_near_token(near, pos, end))
            return
    field = _FIELD_RE.match(rest)
    if field is not None:
        name = field.group(1).lower()
        value = rest[field.end() :]
        if name in FIELDS:
            colon = pos + field.end()
            tokens.append(_Tok("FIELD", pos, colon, name))
            if value:
                tokens.append(_Tok("TERM", colon, end, value))
            elif not (end < len(query) and query[end] in _OPEN_PAREN + _OPEN_QUOTE):
                raise QuerySyntaxError(
                    colon,
                    f'expected a value right after "{name}:" (no space), e.g. {name}:xxx '
                    f'or {name}:("a" OR "b")',
                    "a value",
                )
            return
        if not value.startswith("//"):
            raise QuerySyntaxError(
                pos,
                f'unknown field "{field.group(1)}:"; the fields are '
                + ", ".join(f"{f}:" for f in FIELDS)
                + ' (put text with a colon in quotes: "re:xx")',
                "a field name",
            )
    tokens.append(_Tok("TERM", pos, end, rest))


def _near_token(match: re.Match[str], pos: int, end: int) -> _Tok:
    keyword, number = match.group(1), match.group(2)
    if number is None:
        raise QuerySyntaxError(
            pos, f"{keyword} needs a distance, e.g. {keyword}/5", f"{keyword}/<number>"
        )
    if not (number.isascii() and number.isdigit()):
        raise QuerySyntaxError(
            pos + len(keyword) + 1,
            f"expected a number after {keyword}/ (e.g. {keyword}/5), found "
            + (f'"{number}"' if number else "nothing"),
            "a number",
        )
    distance = int(number)
    if distance > MAX_NEAR:
        raise QuerySyntaxError(
            pos + len(keyword) + 1,
            f"the {keyword} distance must be between 0 and {MAX_NEAR}, found {distance}",
            f"a number from 0 to {MAX_NEAR}",
        )
    return _Tok("NEAR", pos, end, f"{keyword}/{distance}", distance)


# --- Parser -----------------------------------------------------------------------------------

_STARTS = frozenset({"TERM", "PHRASE", "LP", "NOT", "PLUS", "MINUS", "FIELD"})
_OPERAND = 'a term, a phrase or "("'


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokenize(query)
        self.i = 0
        self.depth = 0
        self.terms = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def next(self) -> _Tok:
        tok = self.tokens[self.i]
        if tok.kind != "EOF":
            self.i += 1
        return tok

    def fail(self, tok: _Tok, expected: str, after: str = "") -> QuerySyntaxError:
        where = f" after {after}" if after else ""
        return QuerySyntaxError(
            tok.pos, f"expected {expected}{where}, found {_describe(tok)}", expected
        )

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(
                tok.pos,
                f"the query is nested too deeply (at most {MAX_DEPTH} levels of "
                "parentheses and NOT)",
                "less nesting",
            )

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise QuerySyntaxError(0, "the query is empty", _OPERAND)
        node = self.parse_or(None)
        tok = self.peek()
        if tok.kind == "RP":
            raise QuerySyntaxError(tok.pos, 'unbalanced ")": no "(" to close', "end of query")
        if tok.kind != "EOF":
            raise self.fail(tok, "an operator or end of query")
        return node

    def parse_or(self, scope: str | None) -> Node:
        items = [self.parse_and(scope)]
        while self.peek().kind == "OR":
            op = self.next()
            if self.peek().kind not in _STARTS:
                raise self.fail(self.peek(), _OPERAND, op.text if op.text != "|" else '"|"')
            items.append(self.parse_and(scope))
        return _or(items)

    def parse_and(self, scope: str | None) -> Node:
        if self.peek().kind not in _STARTS:
            raise self.fail(self.peek(), _OPERAND, self._after())
        items = [self.parse_unary(scope)]
        while True:
            tok = self.peek()
            if tok.kind == "AND":
                self.next()
                if self.peek().kind not in _STARTS:
                    raise self.fail(self.peek(), _OPERAND, "AND")
            elif tok.kind not in _STARTS:
                break
            items.append(self.parse_unary(scope))
        return _and(items)

    def _after(self) -> str:
        if self.i == 0:
            return ""
        prev = self.tokens[self.i - 1]
        return _describe(prev) if prev.kind != "TERM" else ""

    def parse_unary(self, scope: str | None) -> Node:
        tok = self.peek()
        if tok.kind in ("NOT", "MINUS", "PLUS"):
            self.next()
            self.enter(tok)
            if self.peek().kind not in _STARTS:
                raise self.fail(self.peek(), _OPERAND, tok.text)
            child = self.parse_unary(scope)
            self.depth -= 1
            return child if tok.kind == "PLUS" else Not(child)
        return self.parse_near(scope)

    def parse_near(self, scope: str | None) -> Node:
        left_tok = self.peek()
        left = self.parse_primary(scope)
        op = self.peek()
        if op.kind != "NEAR":
            return left
        self.next()
        keyword = op.text.split("/")[0]
        if scope in METADATA_FIELDS:
            raise QuerySyntaxError(
                op.pos, f"{keyword} cannot be used inside {scope}:(...)", "OR, AND or NOT"
            )
        _check_near_operand(left, left_tok, keyword)
        right_tok = self.peek()
        if right_tok.kind not in ("TERM", "PHRASE", "LP"):
            raise self.fail(right_tok, _OPERAND, op.text)
        right = self.parse_primary(scope)
        _check_near_operand(right, right_tok, keyword)
        after = self.peek()
        if after.kind == "NEAR":
            raise QuerySyntaxError(
                after.pos,
                f"{keyword} cannot be chained: write (a {op.text} b) AND (b {op.text} c)",
                "AND or OR",
            )
        return Near(left, right, op.distance, ordered=keyword == "ONEAR")

    def parse_primary(self, scope: str | None) -> Node:
        tok = self.next()
        if tok.kind == "TERM":
            return self.make(tok, scope, quoted=False)
        if tok.kind == "PHRASE":
            return self.make(tok, scope, quoted=True)
        if tok.kind == "LP":
            self.enter(tok)
            node = self.parse_or(scope)
            close = self.next()
            if close.kind != "RP":
                raise QuerySyntaxError(
                    close.pos,
                    f'expected ")" to close "(" at character {tok.pos}, found {_describe(close)}',
                    '")"',
                )
            self.depth -= 1
            return node
        if tok.kind == "FIELD":
            if scope is not None:
                raise QuerySyntaxError(
                    tok.pos, f'"{tok.text}:" cannot be used inside {scope}:(...)', _OPERAND
                )
            value = self.peek()
            if value.pos != tok.end or value.kind not in ("TERM", "PHRASE", "LP"):
                raise self.fail(value, "a value right after it (no space)", f'"{tok.text}:"')
            child = self.parse_primary(tok.text)
            return Field(tok.text, child) if tok.text in TEXT_FIELDS else child
        raise self.fail(tok, _OPERAND, self._after())

    def make(self, tok: _Tok, scope: str | None, quoted: bool) -> Node:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QuerySyntaxError(
                tok.pos, f"too many terms: a query may have at most {MAX_TERMS}", "fewer terms"
            )
        if scope in METADATA_FIELDS:
            return Filter(scope, _canonical_value(scope, tok.text, tok.pos))
        return _make_term(tok.text, tok.pos, quoted)


def _make_term(raw: str, pos: int, quoted: bool) -> Term:
    wildcard = not quoted and raw.endswith("*")
    core = raw[:-1] if wildcard else raw
    if not quoted and "*" in core:
        raise QuerySyntaxError(
            pos + core.index("*"),
            '"*" is only allowed at the end of a word (a wildcard); put the text in quotes '
            'to search for "*"',
            "a term",
        )
    text = normalize(core)
    if not text:
        what = "phrase" if quoted else "term"
        raise QuerySyntaxError(pos, f"empty {what}", "a term")
    if wildcard and len(text) < 2:
        raise QuerySyntaxError(
            pos, "a wildcard needs at least 2 characters before *", "a longer prefix"
        )
    if wildcard and _needs_quotes(text):
        raise QuerySyntaxError(pos, "a wildcard cannot be used on this text", "a word")
    return Term(text, wildcard)


def _check_near_operand(node: Node, tok: _Tok, keyword: str) -> None:
    ok = isinstance(node, Term) or (
        isinstance(node, Or) and all(isinstance(c, Term) for c in node.children)
    )
    if not ok:
        raise QuerySyntaxError(
            tok.pos,
            f"{keyword} joins two terms, phrases or (OR-groups of terms), "
            f"e.g. (地震 OR 余震) {keyword}/5 救援",
            "a term, a phrase or an OR-group",
        )


def _and(items: list[Node]) -> Node:
    flat: list[Node] = []
    for item in items:
        flat.extend(item.children if isinstance(item, And) else (item,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(items: list[Node]) -> Node:
    flat: list[Node] = []
    for item in items:
        flat.extend(item.children if isinstance(item, Or) else (item,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def _positive(node: Node) -> bool:
    """Whether every match must contain something (a term or a filter that holds)."""
    if isinstance(node, Term | Filter | Near):
        return True
    if isinstance(node, Field):
        return _positive(node.child)
    if isinstance(node, And):
        return any(_positive(c) for c in node.children)
    if isinstance(node, Or):
        return all(_positive(c) for c in node.children)
    # NOT only removes matches, except when it undoes another NOT.
    return isinstance(node.child, Not) and _positive(node.child.child)


# --- Field values -----------------------------------------------------------------------------


def _value_error(name: str, raw: str, pos: int, allowed: str) -> QuerySyntaxError:
    return QuerySyntaxError(pos, f'invalid {name}: value "{raw}": expected {allowed}', allowed)


def site_host(value: str) -> str:
    """Host of a site value or URL, lower case, without scheme, port, path or "*." prefix."""
    host = normalize(value).strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = host.rsplit("@", 1)[-1]
    if ":" in host:
        head, _, port = host.rpartition(":")
        if port.isdigit():
            host = head
    while host.startswith(("*.", ".")):
        host = host[2:] if host.startswith("*.") else host[1:]
    return host.rstrip(".")


def _canonical_value(name: str, raw: str, pos: int) -> str:
    """The stored form of a field value, or QuerySyntaxError naming the allowed values."""
    if name == "site":
        host = site_host(raw)
        if not host or "*" in host or " " in host:
            raise _value_error(name, raw, pos, "a host name such as weibo.com or gov.cn")
        return host
    if name == "source":
        value = normalize(raw)
        if value.isascii() and value.isdigit():
            return str(int(value))
        if not value:
            raise _value_error(name, raw, pos, "a source name or numeric id")
        return value
    if name in ("author", "category"):
        value = normalize(raw)
        if not value:
            raise _value_error(name, raw, pos, f"a non-empty {name}")
        return value
    if name == "lang":
        value = normalize(raw).replace("_", "-")
        value = _LANG_ALIASES.get(value, value)
        if not _LANG_RE.fullmatch(value):
            raise _value_error(name, raw, pos, "a language code such as zh or en")
        return value
    if name == "sentiment":
        value = SENTIMENTS.get(normalize(raw))
        if value is None:
            raise _value_error(name, raw, pos, "positive, neutral or negative (正面/中性/负面)")
        return value
    if name == "level":
        value = LEVELS.get(normalize(raw))
        if value is None:
            raise _value_error(
                name,
                raw,
                pos,
                "general, serious, major or critical (一般/较大/重大/特大, IV/III/II/I)",
            )
        return value
    if name == "region":
        from tingfeng.analyze.regions import region_codes  # heavy: only when a query needs it

        try:
            return region_codes([normalize(raw)])[0]
        except ValueError:
            raise QuerySyntaxError(
                pos,
                f'unknown or ambiguous region "{raw}": give a division code (330100) or a '
                "fuller name (浙江省杭州市)",
                "a region code or name",
            ) from None
    raise QuerySyntaxError(pos, f'unknown field "{name}:"', "a field name")  # pragma: no cover


# --- Public functions -------------------------------------------------------------------------


def parse_query(text: str) -> Node:
    """The syntax tree of a query; raises QuerySyntaxError with the position of the problem."""
    if len(text) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(
            MAX_QUERY_CHARS,
            f"the query is too long ({len(text):,} characters; at most {MAX_QUERY_CHARS:,})",
            "a shorter query",
        )
    node = _Parser(text).parse()
    if not _positive(node):
        raise QuerySyntaxError(
            0,
            "the query has nothing that must be present: NOT only removes matches, so add a "
            "term or a field filter (e.g. 地震 NOT 演习, or lang:zh NOT 广告)",
            "a positive term",
        )
    return node


def _needs_quotes(text: str) -> bool:
    return (
        not text
        or any(c.isspace() or c in _SPECIAL or c in "*\\" for c in text)
        or text[0] in "+-"
        or text in ("AND", "OR", "NOT")
        or _NEAR_RE.fullmatch(text) is not None
        or _FIELD_RE.match(text) is not None
    )


def _quote(text: str) -> str:
    if not _needs_quotes(text):
        return text
    escaped = "".join("\\" + c if c in _CLOSE_QUOTE or c == "\\" else c for c in text)
    return '"' + escaped + '"'


_PRECEDENCE = {Or: 1, And: 2, Not: 3, Near: 4}


def _render(node: Node, minimum: int) -> str:
    text = _render_bare(node)
    return f"({text})" if _PRECEDENCE.get(type(node), 5) < minimum else text


def _render_bare(node: Node) -> str:
    if isinstance(node, Term):
        return node.text + "*" if node.wildcard else _quote(node.text)
    if isinstance(node, Filter):
        return f"{node.name}:{_quote(node.value)}"
    if isinstance(node, Field):
        inner = _render_bare(node.child)
        return f"{node.name}:{inner}" if isinstance(node.child, Term) else f"{node.name}:({inner})"
    if isinstance(node, Near):
        keyword = "ONEAR" if node.ordered else "NEAR"
        return f"{_render(node.left, 5)} {keyword}/{node.distance} {_render(node.right, 5)}"
    if isinstance(node, Not):
        return "NOT " + _render(node.child, 3)
    if isinstance(node, And):
        return " AND ".join(_render(c, 3) for c in node.children)
    if isinstance(node, Or):
        return " OR ".join(_render(c, 2) for c in node.children)
    raise TypeError(f"not a query node: {node!r}")


def to_text(node: Node) -> str:
    """Canonical query text of a tree: explicit operators, minimal parentheses, quoted phrases.

    `parse_query(to_text(parse_query(q))) == parse_query(q)` for every valid query `q`.
    """
    return _render_bare(node)

"""A parser for the AIP-160 subset the list endpoints accept.

    expr       := or_expr
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := unary (["AND"] unary)*        -- juxtaposition is AND, as in AIP-160
    unary      := ("NOT" | "-") unary | "(" expr ")" | comparison
    comparison := field op value                 -- op: = != < <= > >= :
    field      := name ("." name)*
    value      := "string" | number | true | false | bare_word | *   (`field:*` means exists)

Examples: `score >= 50 AND custom.industry = "SaaS"`, `title:"growth"`, `NOT source = "import"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.errors import InvalidArgument
from server.filtering.ast import Condition, Group, Node, Not, Value

MAX_LENGTH = 4000
MAX_DEPTH = 32

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|=|<|>|:)
  | (?P<paren>[()])
  | (?P<star>\*)
  | (?P<minus>-(?![0-9.]))
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.\-:]))
  | (?P<word>[A-Za-z_][\w.\-@+]*|[\w.\-@+]+)
    """,
    re.VERBOSE,
)

_OPS = {"=": "eq", "!=": "neq", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte", ":": "contains"}
_KEYWORDS = {"AND", "OR", "NOT"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


def _fail(description: str) -> InvalidArgument:
    return InvalidArgument.on("filter", description, reason="FILTER_INVALID")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _fail(f"unexpected character {text[position]!r} at position {position}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise _fail("unexpected end of expression")
        self.index += 1
        return token

    def is_keyword(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text == word

    def parse(self) -> Node:
        node = self.or_expr(0)
        token = self.peek()
        if token is not None:
            raise _fail(f"unexpected {token.text!r} at position {token.position}")
        return node

    def or_expr(self, depth: int) -> Node:
        nodes = [self.and_expr(depth)]
        while self.is_keyword("OR"):
            self.take()
            nodes.append(self.and_expr(depth))
        return nodes[0] if len(nodes) == 1 else Group("OR", tuple(nodes))

    def and_expr(self, depth: int) -> Node:
        nodes = [self.unary(depth)]
        while (token := self.peek()) is not None and not (
            token.kind == "paren" and token.text == ")"
        ):
            if self.is_keyword("OR"):
                break
            if self.is_keyword("AND"):
                self.take()
            nodes.append(self.unary(depth))
        return nodes[0] if len(nodes) == 1 else Group("AND", tuple(nodes))

    def unary(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise _fail(f"expression nests deeper than {MAX_DEPTH} levels")
        token = self.take()
        if (token.kind == "word" and token.text == "NOT") or token.kind == "minus":
            return Not(self.unary(depth + 1))
        if token.kind == "paren" and token.text == "(":
            node = self.or_expr(depth + 1)
            closing = self.take()
            if closing.text != ")":
                raise _fail(f"expected ')' at position {closing.position}")
            return node
        if token.kind != "word" or token.text in _KEYWORDS:
            raise _fail(f"expected a field name at position {token.position}, got {token.text!r}")
        return self.comparison(token)

    def comparison(self, field: Token) -> Node:
        op = self.take()
        if op.kind != "op":
            raise _fail(f"expected an operator after {field.text!r} at position {op.position}")
        value_token = self.take()
        if value_token.kind == "star":
            if op.text != ":":
                raise _fail(f"'*' is only allowed as `{field.text}:*` (field is present)")
            return Condition(field.text, "exists")
        return Condition(field.text, _OPS[op.text], self.value(value_token))

    def value(self, token: Token) -> Value:
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            number = float(token.text)
            return int(number) if number.is_integer() and "." not in token.text else number
        if token.kind == "word" and token.text not in _KEYWORDS:
            lowered = token.text.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            return token.text
        raise _fail(f"expected a value at position {token.position}, got {token.text!r}")


def parse(text: str) -> Node | None:
    """Parse an expression; None for an empty one."""
    if len(text) > MAX_LENGTH:
        raise _fail(f"expression is longer than {MAX_LENGTH} characters")
    tokens = tokenize(text)
    if not tokens:
        return None
    return _Parser(tokens).parse()

"""Rewrite schema references inside function and procedure source text.

`ALTER SCHEMA … RENAME` moves everything PostgreSQL stores by OID (views,
defaults, FKs, policies, triggers, `BEGIN ATOMIC` bodies). What it cannot
move is *text*: plpgsql and SQL string bodies, `SET search_path` clauses and
dynamic SQL. Left alone, restored functions would keep reading and writing
the production schema (docs/facts.md, defect 4).

This is a tokenizer, not a `sed`: it knows string literals, dollar quotes,
quoted identifiers and comments, and rewrites only

- an identifier equal to an old schema name and followed by `.` (a schema
  qualifier), unless it is itself preceded by `.` (then it is a table or
  column named like the schema);
- a bare identifier in a statement that sets `search_path`;
- a string literal whose whole value is an old schema name (`format('%I.%I',
  'tenant', t)`, `set_config('search_path', 'tenant', …)`, `SET search_path
  TO 'tenant'`);
- the same rules, recursively, inside dollar-quoted bodies and inside string
  literals (dynamic SQL such as `EXECUTE 'INSERT INTO tenant.t …'`).

Comments and every other literal are left byte for byte; names that merely
contain an old name (`tenant_ref`, `'tenant rocks'`) never match.

A table, alias or plpgsql variable named like the schema makes `tenant.x`
ambiguous: schema `tenant`, object `x`, or relation `tenant`, column `x`.
Given the catalog's answer (`column_qualifiers`: for each old name, column
names that are not also objects of the schema), `tenant.x` is left alone
when `x` is such a column and is not followed by `(` or `.`. `tenant.*` is
always a row reference, never a schema one, and is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")
# PostgreSQL folds unquoted identifiers to lower case in ASCII only (UTF-8).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_E_ESCAPE = re.compile(r"''|\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})"
                       r"|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_E_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class _Token:
    kind: str   # word, qident, string, estring, dollar, comment, space, punct, unterminated
    text: str
    value: str = ""  # identifier name (folded for words) or literal content


def quote_ident(name: str) -> str:
    """Quote like PostgreSQL's quote_ident (keywords aside: names we emit are ours)."""
    if _PLAIN_IDENT.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_eliteral(value: str) -> str:
    """An E'' literal: its meaning does not depend on standard_conforming_strings."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _decode_estring(body: str) -> str | None:
    """The value of an E'' literal's body (None if it holds escapes we do not read)."""
    def one(m: re.Match) -> str:
        octal, hex_, u4, u8, other = m.groups()
        if m.group(0) == "''":
            return "'"
        if octal or hex_:
            code = int(octal, 8) if octal else int(hex_, 16)
            if code == 0 or code > 0x7f:  # bytes, not characters: leave the literal alone
                raise ValueError(code)
            return chr(code)
        if u4 or u8:
            return chr(int(u4 or u8, 16))
        return _E_SIMPLE.get(other, other)
    try:
        return _E_ESCAPE.sub(one, body)
    except ValueError:
        return None


def _tokenize(text: str) -> list[_Token]:  # noqa: C901 - a lexer is one loop
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            j = i
            while j < n and text[j].isspace():
                j += 1
            tokens.append(_Token("space", text[i:j]))
            i = j
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            tokens.append(_Token("comment", text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            tokens.append(_Token("comment", text[i:j]))
            i = j
        elif ch in "eE" and i + 1 < n and text[i + 1] == "'" and not _continues_word(tokens):
            j = i + 2
            while j < n:
                if text[j] == "\\":
                    j += 2
                elif text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        j += 2
                    else:
                        break
                else:
                    j += 1
            if j >= n:  # unterminated: not ours to touch
                tokens.append(_Token("unterminated", text[i:]))
                break
            raw = text[i:j + 1]
            value = _decode_estring(raw[2:-1])
            tokens.append(_Token("estring" if value is not None else "unterminated",
                                 raw, value or ""))
            i = j + 1
        elif ch == "'":
            j = i + 1
            while j < n:
                if text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:  # unterminated (a fragment of dynamic SQL): verbatim
                tokens.append(_Token("unterminated", text[i:]))
                break
            raw = text[i:j + 1]
            tokens.append(_Token("string", raw, raw[1:-1].replace("''", "'")))
            i = j + 1
        elif ch == '"':
            j = i + 1
            while j < n:
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                tokens.append(_Token("unterminated", text[i:]))
                break
            raw = text[i:j + 1]
            tokens.append(_Token("qident", raw, raw[1:-1].replace('""', '"')))
            i = j + 1
        elif ch == "$" and (m := _DOLLAR_TAG.match(text, i)) and not _continues_word(tokens):
            tag = m.group(0)
            end = text.find(tag, m.end())
            if end < 0:  # unterminated (e.g. '$$' inside a message): verbatim
                tokens.append(_Token("unterminated", text[i:]))
                break
            tokens.append(_Token("dollar", tag, text[m.end():end]))
            i = end + len(tag)
        elif m := _WORD.match(text, i):
            tokens.append(_Token("word", m.group(0), m.group(0).translate(_ASCII_LOWER)))
            i = m.end()
        else:
            tokens.append(_Token("punct", ch))
            i += 1
    return tokens


def _continues_word(tokens: list[_Token]) -> bool:
    """`x$1$` or `namee'…'` : the character belongs to the previous word."""
    return bool(tokens) and tokens[-1].kind == "word"


def _neighbour_index(tokens: list[_Token], index: int, step: int) -> int | None:
    index += step
    while 0 <= index < len(tokens):
        if tokens[index].kind not in ("space", "comment"):
            return index
        index += step
    return None


def _neighbour(tokens: list[_Token], index: int, step: int) -> _Token | None:
    found = _neighbour_index(tokens, index, step)
    return None if found is None else tokens[found]


class Rewriter:
    """Rewrites old schema names to new ones in SQL text; counts what it changed."""

    def __init__(self, mapping: dict[str, str],
                 column_qualifiers: dict[str, set[str]] | None = None) -> None:
        self.mapping = mapping
        self.column_qualifiers = column_qualifiers or {}
        self.changes: list[str] = []

    def rewrite(self, text: str, search_path_context: bool = False) -> str:
        tokens = _tokenize(text)
        out: list[str] = []
        in_search_path = search_path_context
        for index, tok in enumerate(tokens):
            if tok.kind == "punct" and tok.text == ";":
                in_search_path = search_path_context
            if tok.kind in ("word", "string") and tok.value.lower() == "search_path":
                in_search_path = True
            out.append(self._rewrite_token(tokens, index, tok, in_search_path))
        return "".join(out)

    def _rewrite_token(self, tokens: list[_Token], index: int, tok: _Token,
                       in_search_path: bool) -> str:
        if tok.kind in ("word", "qident"):
            new = self.mapping.get(tok.value)
            if new is None:
                return tok.text
            before, after = _neighbour(tokens, index, -1), _neighbour(tokens, index, 1)
            qualifies = after is not None and after.text == "."
            qualified = before is not None and before.text == "."
            if qualifies and not qualified and self._qualifies_a_column(tokens, index, tok):
                return tok.text
            if (qualifies and not qualified) or (in_search_path and not qualified):
                self.changes.append(f"identifier {tok.text} -> {quote_ident(new)}")
                return quote_ident(new)
            return tok.text
        if tok.kind in ("string", "estring"):
            quote = _quote_literal if tok.kind == "string" else _quote_eliteral
            if tok.value in self.mapping:
                new = self.mapping[tok.value]
                self.changes.append(f"literal {tok.text} -> {quote(new)}")
                return quote(new)
            inner = self.rewrite(tok.value, in_search_path)
            return tok.text if inner == tok.value else quote(inner)
        if tok.kind == "dollar":
            # A dollar-quoted body starts statements of its own.
            return tok.text + self.rewrite(tok.value) + tok.text
        return tok.text

    def _qualifies_a_column(self, tokens: list[_Token], index: int, tok: _Token) -> bool:
        """`tenant.x` where `tenant` names a row source (table, alias, variable)."""
        dot = _neighbour_index(tokens, index, 1)
        member_at = None if dot is None else _neighbour_index(tokens, dot, 1)
        if member_at is None:
            return False
        member = tokens[member_at]
        if member.kind == "punct" and member.text == "*":
            return True
        columns = self.column_qualifiers.get(tok.value, set())
        if member.kind not in ("word", "qident") or member.value not in columns:
            return False
        follower = _neighbour(tokens, member_at, 1)
        return follower is None or follower.text not in ("(", ".")


def rewrite_sql(text: str, mapping: dict[str, str],
                column_qualifiers: dict[str, set[str]] | None = None) -> tuple[str, list[str]]:
    """Rewrite `text`; returns the new text and a list of the changes made."""
    rewriter = Rewriter(mapping, column_qualifiers)
    return rewriter.rewrite(text), rewriter.changes

"""A small reader for the subset of Bicep that infra/ uses, so policy tests can inspect it.

It is not a compiler: it reads top-level `param`, `var`, `resource`, `module` and `output`
declarations and turns object/array/string/bool/int literals into Python values. Anything else
(function calls, references, ternaries) is kept as an `Expr` holding the source text, so tests
can still ask "which symbol does this scope refer to?". It raises `BicepSyntaxError` on input it
does not understand rather than guessing, so a policy test never passes on a misread file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"-?\d+")
_RESOURCE_HEAD = re.compile(
    r"resource\s+(?P<symbol>[A-Za-z_]\w*)\s+'(?P<type>[^'@]+)@(?P<version>[^']+)'"
    r"(?P<existing>\s+existing)?\s*=\s*(?:if\s*\((?P<condition>[^\n]*?)\)\s*)?\{"
)
_MODULE_HEAD = re.compile(
    r"module\s+(?P<symbol>[A-Za-z_]\w*)\s+'(?P<path>[^']+)'\s*=\s*(?:if\s*\((?P<condition>[^\n]*?)\)\s*)?\{"
)
_PARAM_HEAD = re.compile(r"param\s+(?P<name>[A-Za-z_]\w*)\s+(?P<type>[A-Za-z_]\w*)(?P<default>\s*=)?")
_VAR_HEAD = re.compile(r"var\s+(?P<name>[A-Za-z_]\w*)\s*=")
_OUTPUT_HEAD = re.compile(r"output\s+(?P<name>[A-Za-z_]\w*)\s+(?P<type>[A-Za-z_]\w*)\s*=")


class BicepSyntaxError(ValueError):
    """The file uses syntax this reader does not handle."""


@dataclass(frozen=True)
class Expr:
    """A Bicep expression kept as source text, e.g. `storage.id` or `guid(a, b)`."""

    text: str

    @property
    def symbol(self) -> str | None:
        """The bare identifier this expression is, if it is one (`storage` -> "storage")."""
        return self.text if _IDENT.fullmatch(self.text) else None


@dataclass
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    condition: str | None
    body: dict[str, Any]
    start: int
    end: int

    def get(self, dotted: str, default: Any = None) -> Any:
        """`res.get("properties.siteConfig.minTlsVersion")`; keys are matched exactly."""
        node: Any = self.body
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


@dataclass
class Module:
    symbol: str
    path: str
    body: dict[str, Any]


@dataclass
class BicepFile:
    path: Path
    text: str
    params: dict[str, Any] = field(default_factory=dict)  # name -> default (None when none)
    # param name -> decorator name -> its argument source text (`@minValue(40)` -> {"minValue": "40"})
    param_decorators: dict[str, dict[str, str]] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    modules: dict[str, Module] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def resources_of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type.lower() == type_.lower()]

    def resolve(self, value: Any) -> Any:
        """Replace an `Expr` that names a variable with the variable's value (one level)."""
        if isinstance(value, Expr) and value.symbol in self.variables:
            return self.variables[value.symbol]
        return value


class _Reader:
    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.pos = 0

    def error(self, message: str) -> BicepSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        return BicepSyntaxError(f"{self.path}:{line}: {message}")

    # -- whitespace and comments ---------------------------------------------------------------
    def skip_space(self, newlines: bool = True) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif self.text.startswith("/*", self.pos):
                end = self.text.find("*/", self.pos)
                if end < 0:
                    raise self.error("unterminated block comment")
                self.pos = end + 2
            else:
                return

    # -- values --------------------------------------------------------------------------------
    def value(self) -> Any:
        self.skip_space()
        ch = self.text[self.pos : self.pos + 1]
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.array()
        if self.text.startswith("'''", self.pos):
            raise self.error("multi-line strings are not supported by this reader")
        if ch == "'":
            start = self.pos
            self.string()
            raw = self.text[start + 1 : self.pos - 1]
            rest = self._expression_tail()
            return raw if not rest else Expr(self.text[start : self.pos].strip())
        return self.expression()

    def _expression_tail(self) -> str:
        """Anything that follows a literal on the same line (e.g. `'a' == b ? x : y`)."""
        start = self.pos
        self.skip_space(newlines=False)
        if self.pos < len(self.text) and self.text[self.pos] not in "\n,]}":
            self.pos = start
            self.expression()
            return self.text[start : self.pos]
        self.pos = start
        return ""

    def string(self) -> None:
        """Skip a single-quoted string, including `${...}` interpolations that may nest strings."""
        assert self.text[self.pos] == "'"
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
            elif ch == "'":
                self.pos += 1
                return
            elif self.text.startswith("${", self.pos):
                self.pos += 2
                self._balanced("}")
            elif ch == "\n":
                raise self.error("newline inside a string")
            else:
                self.pos += 1
        raise self.error("unterminated string")

    def _balanced(self, closer: str) -> None:
        """Skip to just after `closer`, honouring nested brackets and strings."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        stack = [closer]
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "'":
                self.string()
                continue
            if ch in pairs:
                stack.append(pairs[ch])
            elif ch == stack[-1]:
                stack.pop()
                if not stack:
                    self.pos += 1
                    return
            elif ch in ")]}":
                raise self.error(f"unbalanced {ch!r}")
            self.pos += 1
        raise self.error(f"missing {closer!r}")

    def expression(self) -> Any:
        """Read to the end of the line (or `,` / closing bracket) at bracket depth zero."""
        start = self.pos
        pairs = {"(": ")", "[": "]", "{": "}"}
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "'":
                self.string()
                continue
            if ch in pairs:
                self.pos += 1
                self._balanced(pairs[ch])
                continue
            if ch in "\n,)]}" or self.text.startswith("//", self.pos):
                break
            self.pos += 1
        text = self.text[start : self.pos].strip()
        if not text:
            raise self.error("expected a value")
        if text == "true":
            return True
        if text == "false":
            return False
        if text == "null":
            return None
        if _INT.fullmatch(text):
            return int(text)
        return Expr(text)

    def obj(self) -> dict[str, Any]:
        assert self.text[self.pos] == "{"
        self.pos += 1
        result: dict[str, Any] = {}
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.error("unterminated object")
            ch = self.text[self.pos]
            if ch == "}":
                self.pos += 1
                return result
            if ch == ",":
                self.pos += 1
                continue
            if ch == "'":
                start = self.pos
                self.string()
                key = self.text[start + 1 : self.pos - 1]
            else:
                m = _IDENT.match(self.text, self.pos)
                if not m:
                    raise self.error(f"expected an object key, found {self.text[self.pos : self.pos + 20]!r}")
                key = m.group(0)
                self.pos = m.end()
            self.skip_space(newlines=False)
            if self.text[self.pos : self.pos + 1] != ":":
                raise self.error(f"expected ':' after key {key!r}")
            self.pos += 1
            if key in result:
                raise self.error(f"duplicate key {key!r}")
            result[key] = self.value()

    def array(self) -> list[Any]:
        assert self.text[self.pos] == "["
        self.pos += 1
        self.skip_space()
        if self.text.startswith("for ", self.pos):
            raise self.error("for-expressions are not supported by this reader")
        items: list[Any] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.error("unterminated array")
            ch = self.text[self.pos]
            if ch == "]":
                self.pos += 1
                return items
            if ch == ",":
                self.pos += 1
                continue
            items.append(self.value())


def parse(path: Path) -> BicepFile:
    text = path.read_text(encoding="utf-8")
    reader = _Reader(text, path)
    result = BicepFile(path=path, text=text)
    decorators: dict[str, str] = {}
    while True:
        reader.skip_space()
        if reader.pos >= len(text):
            return result
        start = reader.pos
        ch = text[start]
        if ch == "@":  # decorator: @description('...'), @secure(), @allowed([...])
            reader.pos += 1
            m = _IDENT.match(text, reader.pos)
            if not m:
                raise reader.error("bad decorator")
            reader.pos = m.end()
            argument = ""
            if text.startswith("(", reader.pos):
                reader.pos += 1
                argument_start = reader.pos
                reader._balanced(")")
                argument = text[argument_start : reader.pos - 1].strip()
            decorators[m.group(0)] = argument
            continue
        if m := _PARAM_HEAD.match(text, start):
            result.param_decorators[m.group("name")] = decorators
        decorators = {}
        if m := _RESOURCE_HEAD.match(text, start):
            reader.pos = m.end() - 1
            body = reader.obj()
            symbol = m.group("symbol")
            if symbol in result.resources:
                raise reader.error(f"duplicate resource symbol {symbol!r}")
            result.resources[symbol] = Resource(
                symbol=symbol,
                type=m.group("type"),
                api_version=m.group("version"),
                existing=bool(m.group("existing")),
                condition=m.group("condition"),
                body=body,
                start=start,
                end=reader.pos,
            )
        elif m := _MODULE_HEAD.match(text, start):
            reader.pos = m.end() - 1
            result.modules[m.group("symbol")] = Module(m.group("symbol"), m.group("path"), reader.obj())
        elif m := _PARAM_HEAD.match(text, start):
            reader.pos = m.end()
            result.params[m.group("name")] = reader.value() if m.group("default") else None
        elif m := _VAR_HEAD.match(text, start):
            reader.pos = m.end()
            result.variables[m.group("name")] = reader.value()
        elif m := _OUTPUT_HEAD.match(text, start):
            reader.pos = m.end()
            result.outputs[m.group("name")] = reader.value()
        elif text.startswith("targetScope", start):
            reader.pos = text.index("=", start) + 1
            reader.value()
        else:
            raise reader.error(f"unexpected top-level text {text[start : start + 40]!r}")


def parse_dir(infra_dir: Path) -> dict[str, BicepFile]:
    """Every .bicep file under infra_dir, keyed by its path relative to infra_dir (posix)."""
    return {p.relative_to(infra_dir).as_posix(): parse(p) for p in sorted(infra_dir.rglob("*.bicep"))}

"""Reading typed values out of a YAML document, every mistake collected with its line and column.

`compose` parses a document with PyYAML's SafeLoader into nodes (not Python objects), so every
value keeps the line and column it was written at; `Walker` reads typed values out of those
nodes and, instead of raising, records a `ConfigProblem` at the node's position, so that one
pass reports every mistake in a file. This module knows YAML, not bridge: what the keys mean
is the schema's (`bridge.routing.schema`).

YAML 1.1 makes some files mean what their author did not write, and both are refused: PyYAML
keeps the last of duplicate keys silently, and reads unquoted `on`/`off`/`yes`/`no` as booleans
(so `on:` as a key is an error, "quote it"). Scalars are read from their source text, never
through YAML 1.1's resolvers, so `010` is not octal and `1:30` is not ninety. Merge keys
(`<<: *defaults`) are honoured, so repeated settings can be written once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import ConfigError, ConfigProblem
from .units import parse_duration, parse_size

T = TypeVar("T")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _NULL, _MERGE = (_TAG + t for t in ("str", "int", "bool", "null", "merge"))
_WHOLE = re.compile(r"-?(?:0|[1-9][0-9]*)")


def compose(text: str, shown: str) -> Node:
    """The document's root node; a syntax error or an empty document is a `ConfigError` naming
    the file as `shown`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        said = [part for part in (exc.context, exc.problem) if part]
        message = "YAML syntax: " + ", ".join(said)
        raise ConfigError([ConfigProblem(shown, line, col, message)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow in a document
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"YAML syntax: unacceptable character #x{exc.character:04x}"
        raise ConfigError([ConfigProblem(shown, line, col, message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(shown, 1, 1, f"YAML syntax: {exc}")]) from None
    if root is None:
        raise ConfigError([ConfigProblem(shown, 1, 1, "the file is empty")])
    return root


def kind(node: Node) -> str:
    """What a node is, as a message says it: `a mapping`, `a list`, `nothing` or `"its text"`."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return f'"{node.value}"'


def present(items: dict[str, Node], key: str) -> Node | None:
    """The node for an optional key; a key with nothing under it (say, every line below it
    commented out) counts as absent."""
    node = items.get(key)
    if isinstance(node, ScalarNode) and node.tag == _NULL:
        return None
    return node


def is_string(node: Node, value: str) -> bool:
    """Whether `node` is the plain string `value` (a keyword such as `auto`)."""
    return isinstance(node, ScalarNode) and node.tag == _STR and node.value == value


class Walker:
    """Reads typed values out of YAML nodes, recording a problem (with its node's position)
    instead of raising, so that one pass reports everything.

    `field` arguments are the dotted path of the value as the file reads (`a.b`, `a[0].c`);
    a problem's message is `field: message`."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.problems: list[ConfigProblem] = []
        # Accepted, but almost certainly not what the author meant.
        self.warnings: list[ConfigProblem] = []
        # Nodes of fields checked after the walk, by field path, so their problems have a place.
        self.positions: dict[str, Node] = {}
        self._seen: set[ConfigProblem] = set()  # a merged (<<) node can be read more than once
        # Each merge source is flattened once: aliases can nest merges exponentially deep.
        self._merged: dict[int, dict[str, tuple[Node, Node]]] = {}

    def error(self, node: Node | None, field: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        col = node.start_mark.column + 1 if node is not None else 1
        problem = ConfigProblem(self.shown, line, col, f"{field}: {message}" if field else message)
        if problem not in self._seen:
            self._seen.add(problem)
            self.problems.append(problem)

    def warn(self, node: Node, field: str, message: str) -> None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        self.warnings.append(ConfigProblem(self.shown, line, col, f"{field}: {message}"))

    def pairs(self, node: Node, field: str) -> dict[str, tuple[Node, Node]] | None:
        """name → (key node, value node) of a mapping, `<<` merges applied; refuses keys that
        are not plain scalars, YAML 1.1 booleans, and duplicates."""
        if not isinstance(node, MappingNode):
            self.error(node, field, f"expected a mapping of keys to values, got {kind(node)}")
            return None
        return self._pairs(node, field, {id(node)})

    def _pairs(
        self, node: MappingNode, field: str, inside: set[int]
    ) -> dict[str, tuple[Node, Node]]:
        explicit: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if key.tag == _MERGE:
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for source in sources:
                    if not isinstance(source, MappingNode) or id(source) in inside:
                        self.error(
                            source, field, "<< merges a mapping (an *alias), or a list of them"
                        )
                        continue
                    if id(source) not in self._merged:
                        self._merged[id(source)] = self._pairs(source, field, inside | {id(source)})
                    for name, pair in self._merged[id(source)].items():
                        merged.setdefault(name, pair)  # YAML: the first merged mapping wins
                continue
            if not isinstance(key, ScalarNode):
                self.error(key, field, "keys must be plain names")
                continue
            name = key.value
            if key.tag == _BOOL:
                where = f"{field}.{name}" if field else name
                self.error(key, where, f'"{name}" is read as a YAML 1.1 boolean; quote it')
                continue
            if name in explicit:
                self.error(key, field or name, f'duplicate key "{name}"')
                continue
            explicit[name] = (key, value)
        return merged | explicit  # a key written out overrides a merged one

    def mapping(self, node: Node, field: str, allowed: tuple[str, ...]) -> dict[str, Node] | None:
        """Like `pairs`, and every key must be one of `allowed`."""
        pairs = self.pairs(node, field)
        if pairs is None:
            return None
        out: dict[str, Node] = {}
        for name, (key, value) in pairs.items():
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                what = f'unknown key "{name}"' if field else f'unknown top-level key "{name}"'
                self.error(key, field, f"{what} (expected one of: {known})")
                continue
            out[name] = value
        return out

    def text(self, node: Node, field: str) -> str | None:
        if not isinstance(node, ScalarNode):
            self.error(node, field, f"expected a string, got {kind(node)}")
            return None
        if node.tag == _BOOL:
            self.error(
                node, field, f'expected a string, got "{node.value}", a YAML 1.1 boolean (quote it)'
            )
            return None
        if node.tag == _NULL:
            self.error(node, field, "expected a value, got nothing")
            return None
        if not node.tag.startswith(_TAG):
            self.error(node, field, f"unsupported YAML tag {node.tag}")
            return None
        return str(node.value)

    def integer(self, node: Node, field: str, low: int, high: int) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != _INT or not _WHOLE.fullmatch(node.value):
            self.error(node, field, "expected a whole number")
            return None
        value = int(node.value)
        if not low <= value <= high:
            self.error(node, field, f"must be between {low} and {high}")
            return None
        return value

    def parsed(self, node: Node, field: str, parse: Callable[[str], T]) -> T | None:
        """`parse` the node's text; its ValueError message becomes the problem."""
        value = self.text(node, field)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.error(node, field, str(exc))
            return None

    def boolean(self, node: Node, field: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.value not in ("true", "false"):
            self.error(node, field, "expected true or false")
            return None
        return node.value == "true"

    def duration(self, node: Node, field: str) -> float | None:
        """A positive duration (`units.parse_duration`), in seconds."""
        value = self.parsed(node, field, parse_duration)
        if value is not None and value <= 0:
            self.error(node, field, "must be greater than zero")
            return None
        return value

    def size(self, node: Node, field: str) -> int | None:
        """A positive size (`units.parse_size`), in bytes."""
        value = self.parsed(node, field, parse_size)
        if value is not None and value <= 0:
            self.error(node, field, "must be greater than zero")
            return None
        return value

    def choice(self, node: Node, field: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(node, field)
        if value is not None and value not in choices:
            self.error(node, field, f'expected one of {", ".join(choices)}, got "{value}"')
            return None
        return value

    def strings(self, node: Node, field: str, example: str) -> list[tuple[str, Node, str]] | None:
        """(value, node, field[i]) for a list of strings."""
        if not isinstance(node, SequenceNode):
            self.error(node, field, f"expected a list, e.g. {example}, got {kind(node)}")
            return None
        out = []
        for index, item in enumerate(node.value):
            where = f"{field}[{index}]"
            value = self.text(item, where)
            if value is not None:
                out.append((value, item, where))
        return out

"""The YAML walker on its own: positions, YAML 1.1 refusals and collected problems, with keys
that mean nothing to bridge (the schema's tests are test_config.py and test_routes_config.py)."""

from __future__ import annotations

import textwrap

import pytest
from yaml.nodes import Node

from bridge.errors import ConfigError
from bridge.routing.yamlwalk import Walker, compose, is_string, kind, present


def walk(text: str) -> tuple[Walker, Node]:
    return Walker("doc.yaml"), compose(textwrap.dedent(text), "doc.yaml")


def shown(w: Walker) -> list[str]:
    return [str(problem) for problem in w.problems]


def test_a_syntax_error_and_an_empty_document_are_config_errors() -> None:
    with pytest.raises(ConfigError) as broken:
        compose("a: [1, 2\n", "doc.yaml")
    assert str(broken.value).startswith("doc.yaml:2:1: YAML syntax: ")
    with pytest.raises(ConfigError) as empty:
        compose("# nothing\n", "doc.yaml")
    assert str(empty.value) == "doc.yaml:1:1: the file is empty"


def test_every_problem_is_collected_at_its_line_and_column() -> None:
    w, root = walk(
        """\
        a: 1
        a: 2
        on: 3
        zz: 4
        """
    )
    items = w.mapping(root, "top", ("a", "b"))
    assert items is not None and set(items) == {"a"}
    assert shown(w) == [
        'doc.yaml:2:1: top: duplicate key "a"',
        'doc.yaml:3:1: top.on: "on" is read as a YAML 1.1 boolean; quote it',
        'doc.yaml:4:1: top: unknown key "zz" (expected one of: a, b)',
    ]


def test_scalars_are_read_from_their_text_not_yaml_1_1_resolvers() -> None:
    w, root = walk(
        """\
        octal: 010
        sexagesimal: 1:30
        yes_word: yes
        wait: 1.5s
        size: 2KB
        """
    )
    items = w.mapping(root, "", ("octal", "sexagesimal", "yes_word", "wait", "size"))
    assert items is not None
    assert w.integer(items["octal"], "octal", 0, 100) is None  # not 8
    assert w.text(items["sexagesimal"], "sexagesimal") == "1:30"  # not 90
    assert w.text(items["yes_word"], "yes_word") is None
    assert w.duration(items["wait"], "wait") == 1.5
    assert w.size(items["size"], "size") == 2048
    assert shown(w) == [
        "doc.yaml:1:8: octal: expected a whole number",
        'doc.yaml:3:11: yes_word: expected a string, got "yes", a YAML 1.1 boolean (quote it)',
    ]


def test_merge_keys_apply_and_a_key_written_out_wins() -> None:
    w, root = walk(
        """\
        base: &base {x: 1, y: 2}
        item:
          <<: *base
          y: 3
        """
    )
    items = w.mapping(root, "", ("base", "item"))
    assert items is not None
    merged = w.mapping(items["item"], "item", ("x", "y"))
    assert merged is not None
    assert {name: w.text(node, name) for name, node in merged.items()} == {"x": "1", "y": "3"}
    assert w.problems == []


def test_the_same_problem_at_the_same_place_is_reported_once() -> None:
    w, root = walk("a: {b: 1}\n")
    for _ in range(2):
        w.text(root, "a")
    assert len(w.problems) == 1


def test_helpers_name_nodes_as_messages_do() -> None:
    w, root = walk("m: {}\nl: []\nn:\ns: auto\n")
    items = w.mapping(root, "", ("m", "l", "n", "s"))
    assert items is not None
    assert [kind(items[k]) for k in ("m", "l", "n", "s")] == [
        "a mapping",
        "a list",
        "nothing",
        '"auto"',
    ]
    assert present(items, "n") is None and present(items, "s") is items["s"]
    assert is_string(items["s"], "auto") and not is_string(items["m"], "auto")

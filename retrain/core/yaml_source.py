"""YAML loading that remembers where every key came from.

`load_yaml_with_lines` returns the parsed data and a map from a key path (a tuple such as
``("algorithm", "group_size")`` or ``("verifiers", 0, "rule")``) to its 1-based line number, so
that validation errors can point at the exact line of the user's file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from retrain.core.errors import ConfigError, ConfigIssue

KeyPath = tuple[str | int, ...]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (YAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first defined on line {seen[key]}); remove one of them",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _index_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            _index_lines(value_node, key_path, lines)
            lines[key_path] = key_node.start_mark.line + 1  # point at the key, not the value
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines)


def parse_yaml_text(text: str, source: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text; syntax errors become a ConfigError naming the file and line."""
    if "\t" in text:
        for number, text_line in enumerate(text.splitlines(), start=1):
            stripped = text_line.lstrip(" ")
            if stripped.startswith("\t"):
                raise ConfigError(
                    [ConfigIssue(None, number, "a tab is used for indentation; YAML needs spaces")],
                    source=source,
                )
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise ConfigError(
            [ConfigIssue(None, line, f"invalid YAML: {problem}; check indentation and quoting")],
            source=source,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(None, None, f"invalid YAML: {exc}")], source=source) from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def load_yaml_with_lines(path: str | Path) -> tuple[Any, dict[KeyPath, int]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(None, None, "file not found; check the path")], source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError(
            [ConfigIssue(None, None, "is a directory; pass the YAML file inside it")], source=str(path)
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(None, None, "is not UTF-8 text")], source=str(path)) from None
    return parse_yaml_text(text, str(path))

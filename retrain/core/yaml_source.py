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


class _KeyError(yaml.constructor.ConstructorError):
    """A key YAML accepts but a config cannot have; its message says what to do."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: construct_mapping merges it
            continue
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            repeated = key in seen
        except TypeError:  # a list or mapping used as a key
            raise _KeyError(None, None, "a key must be a name, not a list or mapping", key_node.start_mark) from None
        if repeated:
            raise _KeyError(
                None,
                None,
                f"duplicate key {key!r} (first defined on line {seen[key]}); remove one of them",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _index_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], seen: set[int]) -> None:
    lines[path] = node.start_mark.line + 1
    if id(node) in seen:  # an alias (*name): its lines are indexed where the anchor is, once
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            _index_lines(value_node, key_path, lines, seen)
            lines[key_path] = key_node.start_mark.line + 1  # point at the key, not the value
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines, seen)


def _line_of_bad_value(node: yaml.Node | None) -> int | None:
    """The line of the first scalar that cannot be constructed (the error itself does not say)."""
    constructor = yaml.SafeLoader("")
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            try:
                constructor.construct_object(current)
            except Exception:  # noqa: BLE001 - any failure is the one being looked for
                return current.start_mark.line + 1
        elif isinstance(current, yaml.MappingNode):
            stack.extend(part for pair in reversed(current.value) for part in reversed(pair))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(reversed(current.value))
    return None


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
    node = None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        if exc.context and exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            problem += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        hint = "" if isinstance(exc, _KeyError) else "; check indentation and quoting"
        raise ConfigError([ConfigIssue(None, line, f"invalid YAML: {problem}{hint}")], source=source) from None
    except yaml.reader.ReaderError as exc:  # a control character or NUL byte in the text
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(
            [ConfigIssue(None, line, f"invalid YAML: the character {code:#06x} is not allowed in YAML "
                                     "text; remove it (or write it as an escape in a double-quoted string)")],
            source=source,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(None, None, f"invalid YAML: {exc}")], source=source) from None
    except RecursionError:
        raise ConfigError(
            [ConfigIssue(None, None, "invalid YAML: nested too deeply; a config is a few levels of mappings")],
            source=source,
        ) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value its tag cannot hold: `!!int x`
        raise ConfigError(
            [ConfigIssue(None, _line_of_bad_value(node), f"invalid YAML value: {exc}; check the explicit tags "
                                                          "(!!int, !!float, ...)")],
            source=source,
        ) from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _index_lines(node, (), lines, set())
    return data, lines


def load_yaml_with_lines(path: str | Path) -> tuple[Any, dict[KeyPath, int]]:
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(None, None, "file not found; check the path")], source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError(
            [ConfigIssue(None, None, "is a directory; pass the YAML file inside it")], source=str(path)
        ) from None
    except OSError as exc:  # permission denied, a name too long, ...
        raise ConfigError(
            [ConfigIssue(None, None, f"cannot read the file ({exc.strerror or exc}); check the path and permissions")],
            source=str(path),
        ) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [ConfigIssue(None, line, f"is not UTF-8 text (byte {raw[exc.start]:#04x}); save the file as UTF-8")],
            source=str(path),
        ) from None
    return parse_yaml_text(text, str(path))

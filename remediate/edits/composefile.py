"""A compose file's `services.NAME.command`, read and rewritten structure-aware (pure `str -> str`).

The file is parsed with PyYAML's composer, whose nodes know where in the text each value starts and ends;
only the tokens of the command that change are rewritten, in the style they are written in (a flow list
`[...]`, a block list, or one string), so comments, order, anchors and every other byte stay as they were.
"""
from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Sequence

import yaml

from .textpatch import EditError

PLAIN = re.compile(r"^[A-Za-z0-9_./,=+@%^-][A-Za-z0-9_./,=+@%^:-]*$")  # safe as a plain scalar in flow and block


def _child(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _root(text: str) -> yaml.Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise EditError(f"not valid YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None) from None
    if root is None:
        raise EditError("empty YAML file")
    return root


def _command_node(text: str, service: str) -> tuple[yaml.Node, yaml.Node] | None:
    services = _child(_root(text), "services")
    if services is None:
        return None
    found = _child(services[1], service)
    if found is None:
        return None
    return _child(found[1], "command")


def defines_command(text: str, service: str) -> bool:
    """Whether this file writes services.SERVICE.command."""
    return _command_node(text, service) is not None


def read_command(text: str, service: str) -> tuple[str, ...] | None:
    """services.SERVICE.command as argv (a string is split as compose splits it); None when not written here."""
    found = _command_node(text, service)
    if found is None:
        return None
    node = found[1]
    if isinstance(node, yaml.ScalarNode):
        return tuple(shlex.split(node.value))
    if isinstance(node, yaml.SequenceNode) and all(isinstance(i, yaml.ScalarNode) for i in node.value):
        return tuple(str(i.value) for i in node.value)
    raise EditError(f"services.{service}.command is neither a string nor a list of strings", node.start_mark.line + 1)


def _scalar(value: str, style: str | None) -> str:
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style in (None, "") and PLAIN.match(value) and value not in ("true", "false", "null", "yes", "no", "on", "off", "~"):
        return value
    return json.dumps(value)


def set_command(text: str, service: str, argv: Sequence[str]) -> str:
    """The file with services.SERVICE.command made `argv`: only the changed tokens rewritten."""
    found = _command_node(text, service)
    if found is None:
        raise EditError(f"services.{service} has no command in this file")
    key, node = found
    line = node.start_mark.line + 1
    if node.start_mark.index < key.end_mark.index:
        raise EditError(f"services.{service}.command is an alias of a value written elsewhere: edit that value", line)
    new = list(argv)
    if isinstance(node, yaml.ScalarNode):
        old = shlex.split(node.value)
        if old == new:
            return text
        if "\n" in text[node.start_mark.index:node.end_mark.index]:
            raise EditError(f"services.{service}.command is a multi-line string: not rewritten", line)
        value = shlex.join(new)
        plain = node.style is None and not re.search(r": | #|^[-?:,\[\]{}#&*!|>'\"%@`]|\s$", value)
        rendered = value if plain else _scalar(value, node.style)
        out = text[:node.start_mark.index] + rendered + text[node.end_mark.index:]
        if read_command(out, service) != tuple(new):
            raise EditError(f"services.{service}.command: the rewrite would not read back as {new}", line)
        return out
    if not isinstance(node, yaml.SequenceNode) or not all(isinstance(i, yaml.ScalarNode) for i in node.value):
        raise EditError(f"services.{service}.command is neither a string nor a list of strings", line)
    items: list[yaml.ScalarNode] = list(node.value)
    old = [str(i.value) for i in items]
    if old == new:
        return text
    if not items or any(i.value != str(i.value) for i in items):
        raise EditError(f"services.{service}.command is an empty list: not rewritten", line)
    flow = bool(node.flow_style)
    style = items[0].style
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) on the original text

    def line_start(index: int) -> int:
        return text.rfind("\n", 0, index) + 1

    def line_end(index: int) -> int:
        return (text.find("\n", index) + 1) or len(text)

    indent = " " * items[0].start_mark.column
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        added = new[j1:j2]
        if op in ("replace", "delete"):
            first, last = items[i1], items[i2 - 1]
            if flow:
                start, end = first.start_mark.index, last.end_mark.index
                if not added:  # drop the separator too: the following ", " or, for the last items, the preceding one
                    after = re.match(r"\s*,\s*", text[end:])
                    if after and i2 < len(items):
                        end += after.end()
                    else:
                        before = re.search(r",\s*$", text[:start])
                        start = before.start() if before else start
                edits.append((start, end, ", ".join(_scalar(a, first.style) for a in added)))
            else:
                start, end = line_start(first.start_mark.index), line_end(last.end_mark.index)
                edits.append((start, end, "".join(f"{indent[:-2]}- {_scalar(a, first.style)}\n" for a in added)))
        else:  # insert before old[i1] (or after the last item)
            if flow:
                if i1 < len(items):
                    at = items[i1].start_mark.index
                    edits.append((at, at, "".join(_scalar(a, style) + ", " for a in added)))
                else:
                    at = items[-1].end_mark.index
                    edits.append((at, at, "".join(", " + _scalar(a, style) for a in added)))
            else:
                at = line_start(items[i1].start_mark.index) if i1 < len(items) else line_end(items[-1].end_mark.index)
                edits.append((at, at, "".join(f"{indent[:-2]}- {_scalar(a, style)}\n" for a in added)))
    out = text
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        out = out[:start] + replacement + out[end:]
    if read_command(out, service) != tuple(new):  # the edit is checked by reading it back
        raise EditError(f"services.{service}.command: the rewrite would not read back as {new}", line)
    return out

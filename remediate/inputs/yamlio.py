"""Safe YAML loading that keeps line numbers and refuses duplicate keys and python tags."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..core.errors import InputError, Location


# Bounds on one YAML input: its size on disk, and the number of values it stands for once its aliases are
# expanded (what validation, templating and masking walk)
MAX_YAML_BYTES = 4 << 20
MAX_EXPANDED = 200_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YMap(dict[str, Any]):
    """A mapping loaded from YAML that remembers where it and each of its keys stand."""

    where: Location
    key_lines: dict[str, int]

    def loc(self, key: str | None = None) -> Location:
        """The location of a key (or of the mapping itself)."""
        if key is not None and key in self.key_lines:
            return Location(self.where.path, self.key_lines[key])
        return self.where


class YList(list[Any]):
    """A sequence loaded from YAML that remembers where each item stands."""

    where: Location
    item_lines: list[int]

    def loc(self, index: int | None = None) -> Location:
        """The location of an item (or of the sequence itself)."""
        if index is not None and 0 <= index < len(self.item_lines):
            return Location(self.where.path, self.item_lines[index])
        return self.where


# libyaml's parser (when PyYAML was built with it) is several times faster and gives the same marks; the
# constructors, and so what is accepted, are the safe ones below either way. Its error messages are vaguer
# (no offending character or alias name), so text it rejects is parsed again in Python for the message.
_FAST: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def _make_loader(path: str, base: type[yaml.SafeLoader] = yaml.SafeLoader) -> type[yaml.SafeLoader]:
    class Loader(base):  # type: ignore[valid-type,misc]
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> YMap:
        # YAML's merge keys: `{<<: *base, name: two}` is base with its name replaced; the mapping's own keys
        # override merged ones (and the first of several merged mappings wins), only its own may not repeat
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        loader.flatten_mapping(node)
        merged = len(node.value) - own
        result = YMap()
        result.where = Location(path, node.start_mark.line + 1)
        result.key_lines = {}
        mine: set[str] = set()
        for i, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) or isinstance(key, bool):
                raise InputError(f"mapping keys must be strings, not {key!r}", Location(path, line))
            key = str(key)
            if i >= merged:
                if key in mine:
                    raise InputError(
                        f"duplicate key {key!r} (first at line {result.key_lines[key]})", Location(path, line)
                    )
                mine.add(key)
            result[key] = loader.construct_object(value_node, deep=True)
            result.key_lines[key] = line
        return result

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> YList:
        result = YList(loader.construct_object(child, deep=True) for child in node.value)
        result.where = Location(path, node.start_mark.line + 1)
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return Loader


def load_text(text: str, path: str) -> Any:
    """Parse YAML text safely; every error names path and line."""
    if _FAST is not None:
        try:
            return _load(text, path, _FAST)
        except InputError:
            pass  # the Python parser below names the problem more precisely
    return _load(text, path, yaml.SafeLoader)


def _load(text: str, path: str, base: type[yaml.SafeLoader]) -> Any:
    loader = _make_loader(path, base)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _bounded(node, path)
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        if "python/" in problem or "could not determine a constructor" in problem:
            problem = f"{problem} (only plain YAML is accepted; python tags are refused)"
        raise InputError(problem, Location(path, line)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(f"malformed YAML: {exc.problem or exc.context}", Location(path, line)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", Location(path)) from None
    finally:
        loader.dispose()


def _bounded(root: yaml.Node, path: str) -> None:
    """Refuse a document whose aliases expand it beyond MAX_EXPANDED nodes (an alias bomb: 600 bytes can stand
    for 9**9 strings, which every later walk of the value would visit) or that refers to itself. The composed
    graph shares each anchored node, so this walk is linear in the file; LINE is the collection that crossed."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in open_:
            raise InputError("a YAML alias refers to the collection it is in (recursive aliases are refused)",
                             Location(path, node.start_mark.line + 1))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            open_.add(key)
            total += sum(size(child) for child in node.value)
            open_.discard(key)
        elif isinstance(node, yaml.MappingNode):
            open_.add(key)
            total += sum(size(k) + size(v) for k, v in node.value)
            open_.discard(key)
        if total > MAX_EXPANDED:
            raise InputError(f"YAML aliases expand this to more than {MAX_EXPANDED} values; refused (an alias bomb?)",
                             Location(path, node.start_mark.line + 1))
        sizes[key] = total
        return total

    try:
        size(root)
    except RecursionError:
        raise InputError("YAML nested too deeply", Location(path)) from None


def load_file(path: Path) -> Any:
    """Read and parse one YAML file (refused above MAX_YAML_BYTES, before it is read)."""
    try:
        big = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", Location(str(path))) from None
    if big > MAX_YAML_BYTES:
        raise InputError(f"{big / (1 << 20):.1f} MiB, more than remediate reads from one YAML file "
                         f"({MAX_YAML_BYTES >> 20} MiB)", Location(str(path)))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", Location(str(path))) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason}", Location(str(path))) from None
    return load_text(text, str(path))

"""Byte-exact text decoding and line-level edits (Ansible lineinfile semantics, unique anchors only)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

__all__ = ["EditError", "TextFormat", "decode", "encode", "ensure_line"]

_BOM = b"\xef\xbb\xbf"
_NEWLINES = re.compile(rb"\r\n|\r|\n")


class EditError(ValueError):
    """An edit that cannot be made safely; `line` is 1-based in the input text when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class TextFormat:
    """How a file's text was stored: BOM, line ending and final newline, restored by `encode`.

    `endings`: when the file mixes line endings, each line's own (the last one "" without a final newline);
    `encode` then keeps them for the lines an edit left alone. Empty for a file with one kind of ending.
    """

    bom: bool
    newline: str
    trailing_newline: bool
    endings: tuple[str, ...] = field(default=(), repr=False)


def decode(data: bytes) -> tuple[str, TextFormat]:
    """Bytes -> text with '\\n' line endings and no BOM, plus the format to restore."""
    bom = data.startswith(_BOM)
    body = data[len(_BOM):] if bom else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = body[: exc.start]
        line = prefix.count(b"\n") + prefix.count(b"\r") - prefix.count(b"\r\n") + 1
        raise EditError(f"not UTF-8 text (undecodable byte 0x{body[exc.start]:02x})", line) from None
    counts: dict[bytes, int] = {}
    for match in _NEWLINES.finditer(body):
        counts[match.group()] = counts.get(match.group(), 0) + 1
    # max() keeps the first of equal counts, and dicts keep first-seen order: ties go to the first ending.
    newline = max(counts, key=lambda k: counts[k]).decode("ascii") if counts else "\n"
    endings: tuple[str, ...] = ()
    if len(counts) > 1:
        endings = tuple(m.decode("ascii") for m in _NEWLINES.findall(body))
        endings += ("",) if body and not body.endswith((b"\n", b"\r")) else ()
    fmt = TextFormat(bom=bom, newline=newline, trailing_newline=not body or body.endswith((b"\n", b"\r")),
                     endings=endings)
    # Every ending becomes '\n' (as Python's own tokenizer does), so edits and ast line numbers agree.
    return text.replace("\r\n", "\n").replace("\r", "\n"), fmt


def encode(text: str, fmt: TextFormat, before: str | None = None) -> bytes:
    """Inverse of decode: restores BOM, line endings and the presence/absence of a final newline.

    For a file with mixed endings, `before` (the text decode gave) tells which lines the edit left alone: they
    keep their own ending, and only new or changed lines get the file's dominant one.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text:
        if fmt.trailing_newline and not text.endswith("\n"):
            text += "\n"
        elif not fmt.trailing_newline and text.endswith("\n"):
            text = text[:-1]
    try:
        if fmt.endings and before is not None:
            body = _with_own_endings(text, before, fmt).encode("utf-8")
        else:
            body = text.replace("\n", fmt.newline).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EditError(f"text cannot be stored as UTF-8 ({exc.reason})", text.count("\n", 0, exc.start) + 1) from None
    return (_BOM if fmt.bom else b"") + body


def _with_own_endings(text: str, before: str, fmt: TextFormat) -> str:
    """text's lines with the endings they had in `before` where they are unchanged, else the dominant ending.

    An edit changes a few lines: the common head and tail are matched in linear time, and only what lies between
    is compared line by line.
    """
    old, new = _split(before), _split(text)
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    # each new line and the old line it is (None: new or changed)
    origin: list[int | None] = list(range(head))
    middle = SequenceMatcher(None, old[head:len(old) - tail], new[head:len(new) - tail], autojunk=False)
    for tag, i1, i2, j1, j2 in middle.get_opcodes():
        origin += [head + i1 + k for k in range(j2 - j1)] if tag == "equal" else [None] * (j2 - j1)
    origin += list(range(len(old) - tail, len(old)))
    out = []
    for line, was in zip(new, origin):
        if not line.endswith("\n"):
            out.append(line)
            continue
        own = fmt.endings[was] if was is not None and was < len(fmt.endings) else ""
        out.append(line[:-1] + (own or fmt.newline))
    return "".join(out)


def _compile(pattern: str, role: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise EditError(f"invalid {role} regular expression /{pattern}/: {exc}") from None


def _split(text: str) -> list[str]:
    """Lines of '\\n' text, each keeping its '\\n' (the last one may lack it)."""
    parts = [part + "\n" for part in text.split("\n")]
    parts[-1] = parts[-1][:-1]
    return parts if parts[-1] else parts[:-1]


def _matching(parts: list[str], rx: re.Pattern[str]) -> list[int]:
    return [i for i, part in enumerate(parts) if rx.search(part.removesuffix("\n"))]


def _numbers(indexes: list[int]) -> str:
    return ", ".join(str(i + 1) for i in indexes)


def _unique_anchor(parts: list[str], pattern: str) -> int:
    found = _matching(parts, _compile(pattern, "anchor"))
    if not found:
        raise EditError(f"anchor /{pattern}/ matches no line")
    if len(found) > 1:
        raise EditError(f"anchor /{pattern}/ matches lines {_numbers(found)}: make it unique", found[0] + 1)
    return found[0]


def ensure_line(
    text: str,
    line: str,
    *,
    state: str = "present",
    regexp: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> str:
    """Ensure `line` is present (replacing the last `regexp` match, else after/before a unique anchor) or absent."""
    if "\n" in line or "\r" in line:
        raise EditError(f"line {line!r} contains a line break")
    if state not in ("present", "absent"):
        raise EditError(f"state must be 'present' or 'absent', not {state!r}")
    if after is not None and before is not None:
        raise EditError("give at most one of after and before")
    rx = _compile(regexp, "regexp") if regexp is not None else None
    # Anchors are checked up front so a bad pattern fails even when the line happens to be present.
    anchor = after if after is not None else before
    if anchor is not None:
        _compile(anchor, "anchor")
    parts = _split(text)
    contents = [part.removesuffix("\n") for part in parts]

    if state == "absent":
        kept = [p for p, c in zip(parts, contents) if not (rx.search(c) if rx else c == line)]
        return text if len(kept) == len(parts) else "".join(kept)

    if rx is not None:
        found = _matching(parts, rx)
        if found:
            last = found[-1]
            if contents[last] == line:
                return text
            if len(found) > 1 and not rx.search(line):
                # The next run would replace the previous match too and leave the line twice.
                raise EditError(
                    f"regexp /{regexp}/ matches lines {_numbers(found)} but not the new line itself: "
                    "replacing the last one would not be idempotent",
                    found[0] + 1,
                )
            parts[last] = line + ("\n" if parts[last].endswith("\n") else "")
            return "".join(parts)
    if line in contents:
        return text

    if after is not None:
        at = _unique_anchor(parts, after)
        if not parts[at].endswith("\n"):
            parts[at] += "\n"
        parts.insert(at + 1, line + "\n")
    elif before is not None:
        parts.insert(_unique_anchor(parts, before), line + "\n")
    else:
        if parts and not parts[-1].endswith("\n"):
            parts[-1] += "\n"
        parts.append(line + "\n")
    return "".join(parts)

"""textpatch: byte-exact decode/encode and lineinfile-style edits with unique anchors."""
from __future__ import annotations

from typing import Any

import pytest

from remediate.edits.textpatch import EditError, TextFormat, decode, encode, ensure_line

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("data, text, fmt", [
    (b"", "", TextFormat(False, "\n", True)),
    (b"a", "a", TextFormat(False, "\n", False)),
    (b"a\nb\n", "a\nb\n", TextFormat(False, "\n", True)),
    (b"a\r\nb\r\n", "a\nb\n", TextFormat(False, "\r\n", True)),
    (b"a\r\nb", "a\nb", TextFormat(False, "\r\n", False)),
    (b"a\rb\r", "a\nb\n", TextFormat(False, "\r", True)),
    (BOM, "", TextFormat(True, "\n", True)),
    (BOM + b"x = 1\r\n", "x = 1\n", TextFormat(True, "\r\n", True)),
    ("é = 'ü'\n".encode(), "é = 'ü'\n", TextFormat(False, "\n", True)),
    (b"\n\n", "\n\n", TextFormat(False, "\n", True)),
])
def test_decode(data: bytes, text: str, fmt: TextFormat) -> None:
    assert decode(data) == (text, fmt)


@pytest.mark.parametrize("data", [
    b"", b"a", b"a\n", b"a\n\n", b"\n", b"a\r\nb\r\n", b"a\r\nb", b"\r\n", b"a\rb\r", b"a\rb",
    BOM, BOM + b"a", BOM + b"a\r\nb\r\n", BOM + b"a\r\nb", "Zürich\r\n\u2028 \x0c\r\n".encode(),
])
def test_round_trip_is_byte_exact(data: bytes) -> None:
    assert encode(*decode(data)) == data


@pytest.mark.parametrize("data, newline", [
    (b"a\r\nb\r\nc\nd", "\r\n"),   # dominant
    (b"a\nb\r\nc\r\n", "\r\n"),
    (b"a\nb\r\n", "\n"),           # tie: the first one
    (b"a\r\nb\n", "\r\n"),
    (b"a\rb\rc\n", "\r"),
])
def test_mixed_endings_use_the_dominant_one(data: bytes, newline: str) -> None:
    text, fmt = decode(data)
    assert fmt.newline == newline and "\r" not in text


@pytest.mark.parametrize("data, edit, expected", [
    # an untouched line keeps its own ending; a new line gets the dominant one
    (b"A=1\r\nB=2\r\nC=3\nD=4\r\n", {"line": "E=5", "after": "^B="}, b"A=1\r\nB=2\r\nE=5\r\nC=3\nD=4\r\n"),
    (b"A=1\r\nB=2\r\nC=3\n", {"line": "D=4"}, b"A=1\r\nB=2\r\nC=3\nD=4\r\n"),
    (b"A=1\nB=2\r\nC=3", {"line": "D=4"}, b"A=1\nB=2\r\nC=3\nD=4"),          # tie: the first ending
    (b"\n\r\n\n\r\nx\n", {"line": "y", "before": "^x"}, b"\n\r\n\n\r\ny\nx\n"),   # blank lines keep theirs
    (b"a\r\nB=1\nc\r\n", {"line": "B=2", "regexp": "^B="}, b"a\r\nB=2\r\nc\r\n"),   # a changed line: dominant
    (b"a\r\nb\nc\r\n", {"line": "b", "state": "absent"}, b"a\r\nc\r\n"),
])
def test_mixed_endings_keep_every_untouched_line_as_it_was(data: bytes, edit: dict[str, Any], expected: bytes) -> None:
    text, fmt = decode(data)
    assert encode(text, fmt, text) == data
    assert encode(ensure_line(text, **edit), fmt, text) == expected


@pytest.mark.parametrize("data, line", [
    (b"\xff", 1),
    (b"ok\n\xfe\n", 2),
    (b"a\r\nb\r\nc = '\xe9'\r\n", 3),
    (b"a\rb\rc\r\xff", 4),
    (BOM + b"a\n\x80", 2),
])
def test_decode_refuses_undecodable_bytes_with_the_line(data: bytes, line: int) -> None:
    with pytest.raises(EditError, match="not UTF-8") as info:
        decode(data)
    assert info.value.line == line


@pytest.mark.parametrize("text, fmt, data", [
    ("a", TextFormat(False, "\n", True), b"a\n"),
    ("a\n", TextFormat(False, "\n", False), b"a"),
    ("a\n\n", TextFormat(False, "\r\n", False), b"a\r\n"),
    ("", TextFormat(True, "\r\n", True), BOM),
    ("a\r\nb\n", TextFormat(False, "\r\n", True), b"a\r\nb\r\n"),   # stray endings in the text follow the format
    ("é\n", TextFormat(True, "\r", True), BOM + "é\r".encode()),
])
def test_encode_restores_the_format(text: str, fmt: TextFormat, data: bytes) -> None:
    assert encode(text, fmt) == data


def test_encode_refuses_unencodable_text() -> None:
    with pytest.raises(EditError) as info:
        encode("a\nb\ud800\n", TextFormat(False, "\n", True))
    assert info.value.line == 2


# (text, line, options, expected)
CHANGES: list[tuple[str, str, dict[str, Any], str]] = [
    # append at the end
    ("", "A=1", {}, "A=1\n"),
    ("x\n", "A=1", {}, "x\nA=1\n"),
    ("x", "A=1", {}, "x\nA=1\n"),
    # after / before a unique anchor
    ("# settings\nz\n", "A=1", {"after": "^# settings"}, "# settings\nA=1\nz\n"),
    ("a\n# end", "A=1", {"after": "^# end"}, "a\n# end\nA=1\n"),
    ("a\n# end\n", "A=1", {"before": "end$"}, "a\nA=1\n# end\n"),
    ("# end\n", "A=1", {"before": "end"}, "A=1\n# end\n"),
    # regexp replaces the last match in place
    ("A=0\nB=2\n", "A=1", {"regexp": "^A="}, "A=1\nB=2\n"),
    ("A=0\nB=2\nA=5\n", "A=1", {"regexp": "^A="}, "A=0\nB=2\nA=1\n"),
    ("x\nA=0", "A=1", {"regexp": "^A="}, "x\nA=1"),
    ("A=0  # why\n", "A=1  # why", {"regexp": r"^A=\d"}, "A=1  # why\n"),
    ("x\n", "A=1", {"regexp": "^A=", "after": "^x"}, "x\nA=1\n"),   # no match: inserted at the anchor
    ("A=old\n", "A=new", {"regexp": "^A=old$"}, "A=new\n"),        # regexp not matching the line, one match
    # non-ASCII content around
    ("título = 'é'\n", "ü=1", {"after": "^título"}, "título = 'é'\nü=1\n"),
    # absent
    ("a\nA=1\nb\nA=1\n", "A=1", {"state": "absent"}, "a\nb\n"),
    ("a\nA=1", "A=1", {"state": "absent"}, "a\n"),
    ("A=1\nA=2\nb\n", "", {"state": "absent", "regexp": "^A="}, "b\n"),
]


@pytest.mark.parametrize("text, line, options, expected", CHANGES)
def test_ensure_line_changes(text: str, line: str, options: dict[str, Any], expected: str) -> None:
    assert ensure_line(text, line, **options) == expected


@pytest.mark.parametrize("text, line, options, expected", CHANGES)
def test_ensure_line_is_idempotent(text: str, line: str, options: dict[str, Any], expected: str) -> None:
    once = ensure_line(text, line, **options)
    assert ensure_line(once, line, **options) == once


# (text, line, options): already as wanted
UNCHANGED: list[tuple[str, str, dict[str, Any]]] = [
    ("A=1\n", "A=1", {}),
    ("x\nA=1", "A=1", {}),
    ("A=1\n# anchor\n", "A=1", {"after": "^# anchor"}),   # present anywhere: the anchor does not move it
    ("A=1\n", "A=1", {"after": "^missing"}),               # nothing to insert, so the anchor is not needed
    ("A=1\n", "A=1", {"regexp": "^A="}),
    ("A=0\nA=1\n", "A=1", {"regexp": "^A="}),               # the last match is already the line
    ("A=1\n", "A=1", {"regexp": "^B="}),                    # no match, but the line is there
    ("a\nb\n", "A=1", {"state": "absent"}),
    ("a\nb\n", "", {"state": "absent", "regexp": "^A"}),
    ("", "A=1", {"state": "absent"}),
]


@pytest.mark.parametrize("text, line, options", UNCHANGED)
def test_ensure_line_leaves_text_alone(text: str, line: str, options: dict[str, Any]) -> None:
    assert ensure_line(text, line, **options) == text


@pytest.mark.parametrize("text, line, options, message, at", [
    ("x\n", "A=1", {"after": "^# s"}, "anchor /^# s/ matches no line", None),
    ("x\n", "A=1", {"before": "^# s"}, "anchor /^# s/ matches no line", None),
    ("", "A=1", {"after": "x"}, "matches no line", None),
    ("# s\n# s\n", "A=1", {"after": "^# s"}, "anchor /^# s/ matches lines 1, 2: make it unique", 1),
    ("a\nb\n# s\nc\nd\ne\nf\ng\n# s 2\n", "A=1", {"before": "# s"}, "matches lines 3, 9: make it unique", 3),
    ("x\n", "A=1", {"after": "x", "before": "x"}, "at most one of after and before", None),
    ("x\n", "A=1", {"after": "("}, "invalid anchor regular expression /(/", None),
    ("A=1\n", "A=1", {"before": "[a-"}, "invalid anchor regular expression /[a-/", None),
    ("x\n", "A=1", {"regexp": "*A"}, "invalid regexp regular expression /*A/", None),
    ("x\n", "A=1\nB=2", {}, "contains a line break", None),
    ("x\n", "A=1\r", {}, "contains a line break", None),
    ("x\n", "A=1", {"state": "gone"}, "state must be", None),
    ("A=old\nA=old\n", "A=new", {"regexp": "^A=old$"}, "matches lines 1, 2 but not the new line", 1),
])
def test_ensure_line_refuses(
    text: str, line: str, options: dict[str, Any], message: str, at: int | None
) -> None:
    with pytest.raises(EditError) as info:
        ensure_line(text, line, **options)
    assert message in info.value.message
    assert info.value.line == at


@pytest.mark.parametrize("data, options, expected", [
    (b"# s\r\nz\r\n", {"after": "^# s"}, b"# s\r\nA=1\r\nz\r\n"),
    (b"# s\r\nz", {}, b"# s\r\nz\r\nA=1"),
    (BOM + b"# s\nz\n", {"before": "^z"}, BOM + b"# s\nA=1\nz\n"),
    (BOM + b"# s\r\nA=0\r\nz", {"regexp": "^A="}, BOM + b"# s\r\nA=1\r\nz"),
    (b"x\rA=1\ry\r", {"state": "absent"}, b"x\ry\r"),
    (b"x\r\nA=1", {"state": "absent"}, b"x"),
    ("é\r\nü".encode(), {"after": "^é"}, "é\r\nA=1\r\nü".encode()),
])
def test_edit_through_decode_and_encode_keeps_the_format(data: bytes, options: dict[str, Any], expected: bytes) -> None:
    text, fmt = decode(data)
    assert encode(ensure_line(text, "A=1", **options), fmt) == expected


def test_edit_error_is_a_value_error_with_message_and_line() -> None:
    error = EditError("bad", 3)
    assert isinstance(error, ValueError)
    assert (error.message, error.line, str(error)) == ("bad", 3, "line 3: bad")
    assert str(EditError("bad")) == "bad" and EditError("bad").line is None

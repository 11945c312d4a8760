"""An exec channel's start marker is read up to its last byte and no further (transport/ssh.py unread_to):
what the command writes right after it (dial-stdio's own error when the daemon is not there) stays unread."""
from __future__ import annotations

import pytest

from remediate.transport.ssh import unread_to

MARK = b"4f1ce0a9e\n"


def read_past_mark(stream: bytes, mark: bytes, most: int = 65536) -> tuple[bytes, bytes]:
    """Read `stream` the way open_channel does (recv returns at most what is asked, and at most `most`)."""
    seen, rest = bytearray(), stream
    while not seen.endswith(mark):
        n = min(unread_to(seen, mark), most)
        assert n > 0
        seen += rest[:n]
        rest = rest[n:]
        assert rest or seen.endswith(mark), "the stream ended before the mark"
    return bytes(seen), rest


@pytest.mark.parametrize("noise", [b"", b"pyenv: noise\n" * 50, b"4f1ce", b"4f1ce0a9", b"4f4f1ce0a9\x00", MARK[:-1]])
@pytest.mark.parametrize("most", [1, 3, 65536])
def test_nothing_after_the_mark_is_read(noise: bytes, most: int) -> None:
    tail = b"failed to open the raw stream connection: connect: no such file or directory\n"
    seen, rest = read_past_mark(noise + MARK + tail, MARK, most)
    assert seen == noise + MARK
    assert rest == tail


@pytest.mark.parametrize("seen, expected", [
    (b"", len(MARK)), (b"xyz", len(MARK)), (b"..4f1ce", len(MARK) - 5), (b"4", len(MARK) - 1),
    (MARK[:-1], 1), (b"4f1ce0a9e", 1),
])
def test_unread_to(seen: bytes, expected: int) -> None:
    assert unread_to(seen, MARK) == expected

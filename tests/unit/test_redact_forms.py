"""Masking sees every form a secret is printed in, in one pass over the text (issue 15 item 8)."""
from __future__ import annotations

import html
import json
import shlex
import urllib.parse

import pytest

from remediate.core.redact import MASK, Redactor

SECRETS = ["it's \"pa ss\" \\ $HOME", "o'brien\\path two", "x/y?z=1&w=\u00e9 2", "tab\there\nnewline"]


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("form", [
    lambda s: s,
    shlex.quote,
    lambda s: "'--flag=" + s.replace("'", "'\"'\"'") + "'",  # inside a larger shell-quoted word
    repr,
    lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'",
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"',
    json.dumps,
    lambda s: json.dumps(s, ensure_ascii=False),
    urllib.parse.quote,
    lambda s: urllib.parse.quote(s, safe=""),
    urllib.parse.quote_plus,
    html.escape,
], ids=["raw", "shlex", "in-word", "repr", "py-single", "py-double", "json", "json-utf8", "url", "url-all",
        "url-plus", "html"])
def test_every_form_is_masked(secret: str, form: object) -> None:
    assert callable(form)
    text = f"before {form(secret)} after"
    masked = Redactor((secret,)).text(text)
    assert MASK in masked and masked.startswith("before ") and masked.endswith(" after"), masked


def test_a_secret_containing_another_is_masked_whole_and_other_text_is_kept() -> None:
    r = Redactor(("s3cret-long-value", "s3cret"))
    assert r.text("a s3cret-long-value b s3cret c") == f"a {MASK} b {MASK} c"
    assert Redactor().text("nothing to hide") == "nothing to hide"


def test_many_secrets_over_a_big_text_in_one_pass() -> None:
    values = tuple(f"secret-value-{i:03d}" for i in range(200))
    text = ("plain text line without secrets\n" * 100_000) + values[-1]
    assert Redactor(values).text(text).endswith(MASK)

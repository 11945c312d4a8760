"""Which values are secret, and masking in text and JSON-like data."""
from __future__ import annotations

import pytest

from remediate.core.redact import MASK, Redactor, ShortSecret, is_secret_name, redactor_for


@pytest.mark.parametrize("name, secret", [
    ("db_password", True), ("DJANGO_SECRET_KEY", True), ("api_token", True), ("ssh_key", True),
    ("PASSWD", True), ("compose_dir", False), ("celery_app", False), ("monkey", True),
])
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_listed_names_are_secret() -> None:
    assert is_secret_name("pin_code", ["pin_code"])


def test_values_collected_from_names_nested_and_listed() -> None:
    r = redactor_for(
        [{"db_password": "hunter2-x", "compose_dir": "/srv", "smtp": {"token": "tok-123"},
          "keys": ["k-aaaa", "k-bbbb"], "api_pin": "98765", "flag_key": True, "port_key": 22}],
        listed=["api_pin"],
    )
    assert set(r.values) == {"hunter2-x", "tok-123", "k-aaaa", "k-bbbb", "98765"}


def test_short_guessed_values_are_left_alone_short_listed_ones_refused() -> None:
    assert redactor_for([{"redis_key_db": "1"}]).values == ()
    with pytest.raises(ShortSecret, match="pin"):
        redactor_for([{"pin": "12"}], listed=["pin"])


def test_longest_secret_masked_whole() -> None:
    r = Redactor(("abcd", "abcdefgh")).merged(Redactor())
    assert r.text("x abcdefgh y abcd") == f"x {MASK} y {MASK}"


def test_data_masks_keys_and_nested_values_and_repr_hides_values() -> None:
    r = Redactor(("s3cret",))
    assert r.data({"a": ["x s3cret", ("s3cret",)], "s3cret": 1, "n": 5}) == {"a": [f"x {MASK}", [MASK]], MASK: 1, "n": 5}
    assert "s3cret" not in repr(r)

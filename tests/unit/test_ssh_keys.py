"""Client keys as OpenSSH treats them, on real key files (no SSH): the permission rule, missing files named,
passphrases from the environment or a terminal, each key decrypted once per run."""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from remediate.transport.keys import PASSPHRASE_ENV, KeyStore, KeyUnusable, check_permissions, fingerprint_of
from remediate.transport.sshconfig import KeyFile

PASS = "open sesame"


def keygen(path: Path, passphrase: str = "") -> KeyFile:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return KeyFile(str(path), "identity_file of host web-1 (inv.yml:3)")


@pytest.mark.parametrize("mode, refused", [(0o600, False), (0o400, False), (0o640, True), (0o644, True),
                                           (0o604, True), (0o660, True)])
def test_a_key_group_or_others_can_read_is_refused_as_openssh_does(tmp_path: Path, mode: int, refused: bool) -> None:
    key = keygen(tmp_path / "k")
    Path(key.path).chmod(mode)
    if not refused:
        check_permissions(key.path, key.origin)
        return
    with pytest.raises(KeyUnusable) as exc:
        check_permissions(key.path, key.origin)
    assert str(exc.value) == (f"private key {key.path} has mode {mode:04o}: readable by group or others, so it is "
                              f"not used (OpenSSH refuses it too); chmod 600 {key.path}")


def test_a_missing_identity_file_is_named_with_where_it_was_named(tmp_path: Path) -> None:
    with pytest.raises(KeyUnusable, match=r"identity file .*/gone \(identity_file of host web-1 \(inv.yml:3\)\) does not exist"):
        check_permissions(str(tmp_path / "gone"), "identity_file of host web-1 (inv.yml:3)")


def test_a_plain_key_loads_and_its_fingerprint_is_openssh_s(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    loaded = KeyStore(prompt=None).load(key)
    printed = subprocess.run(["ssh-keygen", "-lf", f"{key.path}.pub"], capture_output=True, text=True).stdout.split()[1]
    assert fingerprint_of(loaded.asbytes()) == printed
    assert KeyStore().public_blob(key.path) == loaded.asbytes()


def test_a_passphrase_from_the_environment(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k", PASS)
    assert KeyStore.from_environment({PASSPHRASE_ENV: PASS}, prompt=None).load(key) is not None
    with pytest.raises(KeyUnusable, match=f"the passphrase in {PASSPHRASE_ENV} does not decrypt {key.path}"):
        KeyStore.from_environment({PASSPHRASE_ENV: "wrong"}, prompt=None).load(key)


def test_without_a_passphrase_or_a_terminal_it_says_how_to_give_one(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k", PASS)
    with pytest.raises(KeyUnusable) as exc:
        KeyStore(prompt=lambda question: None).load(key)
    assert str(exc.value) == (f"private key {key.path} is passphrase-protected: add it to the ssh-agent (ssh-add "
                              f"{key.path}), or give its passphrase in {PASSPHRASE_ENV} (or run on a terminal to be asked)")


def test_a_terminal_is_asked_once_per_key_whatever_the_number_of_hosts(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k", PASS)
    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return "typo" if len(asked) == 1 else PASS

    store = KeyStore(prompt=prompt)
    threads = [threading.Thread(target=store.load, args=(key,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert asked == [f"Enter passphrase for key '{key.path}': "] * 2  # a typo, then right: then never again
    store.load(key)
    assert len(asked) == 2


def test_three_wrong_answers_and_the_key_is_not_used(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k", PASS)
    asked: list[str] = []
    store = KeyStore(prompt=lambda q: asked.append(q) or "nope")  # type: ignore[func-returns-value]
    for _ in range(2):
        with pytest.raises(KeyUnusable, match=r"wrong passphrase for .* \(3 tries\)"):
            store.load(key)
    assert len(asked) == 3  # the failure is remembered too: the next host does not ask again


def test_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    bogus = tmp_path / "notakey"
    bogus.write_text("hello\n")
    bogus.chmod(0o600)
    with pytest.raises(KeyUnusable, match="is not a private key paramiko can read"):
        KeyStore(prompt=None).load(KeyFile(str(bogus), "--private-key"))

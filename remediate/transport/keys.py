"""Client keys as OpenSSH uses them: the agent first, then key files (decrypted once per run, with the
passphrase from REMEDIATE_SSH_KEY_PASSPHRASE or asked on a terminal), OpenSSH's permission rule, and a
failure that names every key it tried and why each was not used."""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.options import KEY_PASSPHRASE_ENV
from .sshconfig import DEFAULT_KEYS, Hop, KeyFile

if TYPE_CHECKING:
    import paramiko

PASSPHRASE_ENV = KEY_PASSPHRASE_ENV
_PROMPTS = 3  # OpenSSH's NumberOfPasswordPrompts
# one question on the terminal at a time, whichever host's connection asks (a key's passphrase, sudo's password)
PROMPT_LOCK = threading.Lock()


class KeyUnusable(Exception):
    """A key file that cannot be offered: missing, readable by others, encrypted without a passphrase, not a key."""


def fingerprint_of(blob: bytes) -> str:
    """OpenSSH-style SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def terminal_prompt(question: str) -> str | None:
    """Ask on the terminal (stdin a TTY, as ssh asks), or None when there is none (CI, a pipe)."""
    try:
        if not sys.stdin or not sys.stdin.isatty():
            return None
    except (ValueError, OSError):
        return None
    return getpass.getpass(question)


def check_permissions(path: str, origin: str) -> None:
    """Refuse a private key others can read, as OpenSSH does (only for the user's own files, as OpenSSH)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyUnusable(f"identity file {path} ({origin}) does not exist") from None
    except OSError as exc:
        raise KeyUnusable(f"cannot read identity file {path} ({origin}): {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyUnusable(f"identity file {path} ({origin}) is not a regular file")
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        raise KeyUnusable(
            f"private key {path} has mode {stat.S_IMODE(st.st_mode):04o}: readable by group or others, so it is not "
            f"used (OpenSSH refuses it too); chmod 600 {path}"
        )


class KeyStore:
    """The run's private keys, each loaded and decrypted at most once, shared by every host's connection."""

    def __init__(self, passphrase: str | None = None, prompt: Callable[[str], str | None] | None = terminal_prompt,
                 passphrase_from: str = PASSPHRASE_ENV) -> None:
        self._passphrase = passphrase
        self._passphrase_from = passphrase_from
        self._prompt = prompt
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, int, int], paramiko.PKey | KeyUnusable] = {}

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None,
                         prompt: Callable[[str], str | None] | None = terminal_prompt) -> KeyStore:
        """The passphrase (if any) from REMEDIATE_SSH_KEY_PASSPHRASE."""
        env = dict(os.environ) if env is None else env
        return cls(env.get(PASSPHRASE_ENV) or None, prompt)

    def public_blob(self, path: str) -> bytes | None:
        """The key's public blob from PATH.pub (no decryption), for matching agent keys; None if unknown."""
        try:
            with open(f"{path}.pub", encoding="ascii") as fh:
                parts = fh.read().split()
            return base64.b64decode(parts[1]) if len(parts) >= 2 else None
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def load(self, key: KeyFile) -> paramiko.PKey:
        """The decrypted key (cached by path and file version); KeyUnusable says why not."""
        check_permissions(key.path, key.origin)
        st = os.stat(key.path)
        version = (key.path, st.st_ino, st.st_mtime_ns)
        with self._lock:  # one loader per key at a time: others wait, then reuse what it got
            cached = self._loaded.get(version)
            if cached is None:
                cached = self._loaded[version] = self._decrypt(key)
        if isinstance(cached, KeyUnusable):
            raise cached
        return cached

    def _decrypt(self, key: KeyFile) -> paramiko.PKey | KeyUnusable:
        import paramiko

        try:
            return paramiko.PKey.from_path(key.path)
        except TypeError:
            pass  # encrypted ("password was not provided"), asked for below
        except (ValueError, paramiko.SSHException, UnicodeDecodeError) as exc:
            return KeyUnusable(f"{key.path} ({key.origin}) is not a private key paramiko can read: {exc}")
        except OSError as exc:
            return KeyUnusable(f"cannot read identity file {key.path} ({key.origin}): {exc.strerror or exc}")
        if self._passphrase is not None:
            loaded = _with_passphrase(key.path, self._passphrase)
            if loaded is None:
                return KeyUnusable(f"the passphrase in {self._passphrase_from} does not decrypt {key.path}")
            return loaded
        if self._prompt is not None:
            with PROMPT_LOCK:
                for _ in range(_PROMPTS):
                    answer = self._prompt(f"Enter passphrase for key '{key.path}': ")
                    if answer is None:
                        break
                    loaded = _with_passphrase(key.path, answer)
                    if loaded is not None:
                        return loaded
                else:
                    return KeyUnusable(f"wrong passphrase for {key.path} ({_PROMPTS} tries)")
        return KeyUnusable(
            f"private key {key.path} is passphrase-protected: add it to the ssh-agent (ssh-add {key.path}), "
            f"or give its passphrase in {self._passphrase_from} (or run on a terminal to be asked)"
        )


def _with_passphrase(path: str, passphrase: str) -> paramiko.PKey | None:
    import paramiko

    try:
        # cryptography's loaders take bytes (the stubs say str)
        return paramiko.PKey.from_path(path, passphrase.encode())  # type: ignore[arg-type]
    except (ValueError, TypeError, paramiko.SSHException):
        return None


# ---------------------------------------------------------------------------------------------------- authentication


@dataclass(frozen=True)
class Tried:
    """One source an authentication tried, and what came of it (None: accepted)."""

    source: str
    failure: str | None
    fingerprint: str | None = None  # of the key accepted


def strategy(hop: Hop, keys: KeyStore, use_agent: bool, tried: list[Tried]) -> Any:
    """A paramiko AuthStrategy trying keys in OpenSSH's order for this hop, recording each try in `tried`."""
    import paramiko
    from paramiko.auth_strategy import AuthStrategy, InMemoryPrivateKey, PrivateKey

    class FileKey(PrivateKey):
        """A key file, decrypted only when the server is asked about it."""

        def __init__(self, username: str, key: KeyFile) -> None:
            super().__init__(username=username)
            self.key = key

        def __repr__(self) -> str:
            return self.key.path

        def authenticate(self, transport: paramiko.Transport) -> list[str]:
            self.pkey = keys.load(self.key)
            result: list[str] = super().authenticate(transport)
            return result

    class AgentKey(InMemoryPrivateKey):
        def __repr__(self) -> str:
            return f"agent key {fingerprint_of(self.pkey.asbytes())}"

    class Strategy(AuthStrategy):
        def __init__(self, **_: Any) -> None:
            super().__init__(ssh_config=paramiko.SSHConfig())
            self.agent: paramiko.Agent | None = None

        def get_sources(self) -> Iterator[Any]:
            agent_keys: Sequence[paramiko.AgentKey] = ()
            if use_agent and os.environ.get("SSH_AUTH_SOCK"):
                self.agent = paramiko.Agent()
                agent_keys = self.agent.get_keys()
            files = list(hop.keys)
            if hop.default_keys:
                files = [KeyFile(os.path.expanduser(p), "a default key", False) for p in DEFAULT_KEYS
                         if os.path.exists(os.path.expanduser(p))]
            blobs = {k.path: keys.public_blob(k.path) for k in files}
            by_blob = {a.asbytes(): a for a in agent_keys}
            served = set()
            # agent keys that are a configured identity's own, in the identities' order
            for k in files:
                blob = blobs[k.path]
                if blob is not None and blob in by_blob:
                    served.add(k.path)
                    yield AgentKey(hop.user, by_blob.pop(blob))
            if not hop.identities_only:
                for agent_key in by_blob.values():
                    yield AgentKey(hop.user, agent_key)
            for k in files:
                if k.path not in served:
                    yield FileKey(hop.user, k)

        def authenticate(self, transport: paramiko.Transport) -> Any:
            try:
                result = super().authenticate(transport)
            except paramiko.auth_strategy.AuthFailure as exc:
                for source_result in exc.result:
                    tried.append(Tried(repr(source_result.source), _why(source_result.result)))
                raise
            finally:
                if self.agent is not None:
                    self.agent.close()
            for source_result in result[:-1]:
                tried.append(Tried(repr(source_result.source), _why(source_result.result)))
            accepted = result[-1].source
            pkey = getattr(accepted, "pkey", None)
            tried.append(Tried(repr(accepted), None, fingerprint_of(pkey.asbytes()) if pkey is not None else None))
            return result

    return Strategy


def _why(result: object) -> str:
    import paramiko

    if isinstance(result, KeyUnusable):
        return str(result)
    if isinstance(result, paramiko.AuthenticationException):
        return "refused by the server"
    if isinstance(result, Exception):
        return f"{type(result).__name__}: {result}" if str(result) else type(result).__name__
    return "accepted"


def auth_failure(hop: Hop, tried: Sequence[Tried], use_agent: bool) -> str:
    """What authentication tried as hop.user and why nothing worked, in one line."""
    if not tried:
        agent = "the agent has no keys" if use_agent and os.environ.get("SSH_AUTH_SOCK") else "no agent (SSH_AUTH_SOCK)"
        return (f"authentication failed as {hop.user}: no key to offer (no identity_file, IdentityFile or "
                f"~/.ssh/id_* key; {agent})")
    parts = [f"{t.source}: {t.failure}" for t in tried]
    return f"authentication failed as {hop.user}: " + "; ".join(parts)

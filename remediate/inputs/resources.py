"""Find inventories, playbooks and templates: the working directory first, then the copies shipped with remediate."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError

_PACKAGE = Path(__file__).resolve().parent.parent


def roots() -> tuple[Path, ...]:
    """Directories searched, in order: cwd, the wheel's bundled data, a source checkout's top level."""
    candidates = [Path.cwd(), _PACKAGE / "_data", _PACKAGE.parent]
    seen: list[Path] = []
    for root in candidates:
        if root not in seen and (root / "playbooks").is_dir() or root == Path.cwd():
            if root not in seen:
                seen.append(root)
    return tuple(seen)


def find(kind: str, name: str, suffixes: tuple[str, ...] = (".yml", ".yaml")) -> Path:
    """A file given as a path, or by name under <root>/<kind>/ of each root."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    tried = [str(given)]
    names = [name] if Path(name).suffix in suffixes else [name + s for s in suffixes] + [name]
    for root in roots():
        for candidate in names:
            path = root / kind / candidate
            if path.is_file():
                return path
            tried.append(str(path))
    raise InputError(f"no {kind[:-1] if kind.endswith('s') else kind} {name!r} (looked for {', '.join(tried)})")


def template_path(playbooks: tuple[Path, ...] = ()) -> tuple[str, ...]:
    """Template directories: cwd's, each playbook's sibling templates/, then the bundled ones."""
    dirs: list[str] = []
    candidates = [Path.cwd() / "templates", *(p.resolve().parent.parent / "templates" for p in playbooks)]
    candidates += [root / "templates" for root in roots()]
    for path in candidates:
        if path.is_dir() and str(path) not in dirs:
            dirs.append(str(path))
    return tuple(dirs)

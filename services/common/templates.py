"""Fresh-state templates: what a service makes on a fresh start (its database migrated to the
head revision; the data service's also seeded with the bundled history), kept once in the
repository's gitignored `var/cache/` and copied into a fresh state directory instead of being
made again. A backtest starts six services on fresh databases every run: without templates each
runs Alembic in a child process and the data service re-reads and re-validates 175,000 bars.

A template is named by a digest of everything its content depends on (`digest`): the source
files that make it (migrations, models, seeding code), the bundled data files, and the
environment (Python, SQLite and every installed package's version), so a template can never be
served stale: any change gives another name, and the old file is simply not asked for again.
Templates are written whole to a temporary file and renamed, so a reader never sees a partial
one; two processes making the same template at once both write a complete copy. Beside each
template its content's SHA-256 is kept (`<name>.sha256`, written first) and checked on every
use: a template damaged or edited since it was made (a truncated copy, a disk error, a hand
edit) is deleted and made again, never copied into a state directory.

Only a SQLite file that does not exist yet is made from a template (a run still starts from its
own fresh state directory; an existing database is migrated as always), and only in the
services' processes in backtest and replay mode (`services/common/server.py` enables them). A
cache that cannot be read or written (a read-only checkout) only costs the time it would save.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy.engine import Engine, make_url

from services.common.config import REPO_ROOT

log = logging.getLogger("trader.templates")
COMMON_DIR = Path(__file__).parent
CACHE_DIR = REPO_ROOT / "var" / "cache"  # the repository's var/ is gitignored
_directory: Path | None = None  # where templates are kept; None: disabled
_environment: str | None = None


def enable(directory: Path = CACHE_DIR) -> None:
    """Use (and make) templates in `directory` from now on, in this process."""
    global _directory
    _directory = directory


def disable() -> None:
    global _directory
    _directory = None


def directory() -> Path | None:
    return _directory


def environment() -> str:
    """Python's and SQLite's versions and every installed distribution with its version (the
    names of the *.dist-info / *.egg-info folders of the environment's site-packages), as one text."""
    global _environment
    if _environment is None:
        installed = set()
        for entry in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}:
            try:
                names = os.listdir(entry)
            except OSError:
                continue
            installed.update(name for name in names if name.endswith((".dist-info", ".egg-info")))
        _environment = "\n".join([sys.version, sqlite3.sqlite_version, *sorted(installed)])
    return _environment


def digest(*parts: str | bytes | Path) -> str:
    """SHA-256 (hex, 32 characters kept) of the parts in order: text and bytes as they are, a
    file by its content, a folder by every file under it (relative paths and contents, sorted;
    compiled caches left out). A path that does not exist counts as its name."""
    hashed = hashlib.sha256(environment().encode())
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                           ) if part.is_dir() else [part]
            for file in files:
                hashed.update(b"\0file\0" + str(file.relative_to(part) if part.is_dir() else file.name).encode())
                hashed.update(file.read_bytes() if file.exists() else b"\0missing\0")
        else:
            hashed.update(b"\0part\0" + (part if isinstance(part, bytes) else part.encode()))
    return hashed.hexdigest()[:32]


def schema_key(schema) -> str:
    """The name of a database migrated from nothing to `schema`'s head revision: its revisions,
    the shared migration environment and the code that runs them."""
    return f"schema-{schema.service}-" + digest(schema.versions, COMMON_DIR / "migration_env",
                                                COMMON_DIR / "migrations.py", COMMON_DIR / "db.py")


def fresh_file(url: str) -> Path | None:
    """The file of a SQLite URL that does not exist yet (or is empty, without a write-ahead log),
    when templates are enabled; None otherwise (another database, an existing file, templates
    disabled)."""
    if _directory is None:
        return None
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    if path.exists() and path.stat().st_size > 0 or Path(f"{path}-wal").exists():
        return None  # a database, or what is left of one (its log would be replayed onto the copy)
    return path


def path_of(key: str, suffix: str = ".db") -> Path | None:
    """Where the template `key` (its kind, a dash, its digest) is kept."""
    return None if _directory is None else _directory / f"{key}{suffix}"


def _prune(kept: Path) -> None:
    """Remove the other templates of `kept`'s kind: made by another build, never asked for again."""
    kind = kept.name.rsplit("-", 1)[0]
    for other in kept.parent.glob(f"{kind}-*{kept.suffix}"):
        if other != kept and other.name.rsplit("-", 1)[0] == kind:
            other.unlink(missing_ok=True)
            _record_of(other).unlink(missing_ok=True)


def restore(key: str, target: Path) -> bool:
    """Copy the template `key` to `target` (a fresh file); False when there is none or it is not
    the content it was made with (then it is deleted, see `load`)."""
    content = load(key)
    if content is None:
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    except OSError as exc:
        target.unlink(missing_ok=True)
        log.warning("template %s not restored: %s", key, exc)
        return False
    return True


def load(key: str, suffix: str = ".db") -> bytes | None:
    """The content of the template `key` + `suffix` when it is kept and its SHA-256 is the one
    recorded when it was made; None otherwise. A template that does not match its record (or
    has none) is deleted with a warning naming it, so the caller makes it again."""
    source = path_of(key, suffix)
    if source is None:
        return None
    try:
        content = source.read_bytes()
    except OSError:
        return None  # not kept (yet)
    record = _record_of(source)
    try:
        expected = record.read_text().strip()
    except OSError:
        expected = None
    if expected != hashlib.sha256(content).hexdigest():
        log.warning("template %s does not match its recorded SHA-256 (damaged or edited): deleted, "
                    "made again from the sources", source)
        source.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        return None
    return content


def _record_of(template: Path) -> Path:
    """Where the SHA-256 of `template`'s content is kept."""
    return template.with_name(template.name + ".sha256")


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    """A temporary file in `target`'s folder (so a rename onto `target` is atomic), removed at
    the end of the block unless it was renamed meanwhile."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _keep(temporary: Path, target: Path) -> None:
    """Record the SHA-256 of the complete file `temporary`, then rename it to `target` (the
    record first: a template is never in place without its record)."""
    with _temporary_beside(target) as record:
        record.write_text(hashlib.sha256(temporary.read_bytes()).hexdigest() + "\n")
        os.replace(record, _record_of(target))
    os.replace(temporary, target)
    _prune(target)


def save(engine: Engine, key: str) -> None:
    """Keep the database behind `engine` (SQLite) as the template `key`: a consistent copy by
    SQLite's online backup, renamed into place."""

    def backup(temporary: Path) -> None:
        with engine.connect() as connection:
            copy = sqlite3.connect(temporary)
            try:
                connection.connection.dbapi_connection.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                copy.close()
    _save(path_of(key), backup)


def save_bytes(key: str, suffix: str, content: bytes) -> None:
    """Keep `content` as the template file `key` + `suffix` (renamed into place)."""
    _save(path_of(key, suffix), lambda temporary: temporary.write_bytes(content))


def _save(target: Path | None, fill: Callable[[Path], object]) -> None:
    """Make the template `target` (unless templates are disabled or it is kept already): `fill`
    writes a temporary file beside it, which is recorded and renamed into place (`_keep`). A
    failure only costs the time the template would save: it is logged."""
    if target is None or target.exists():
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _temporary_beside(target) as temporary:
            fill(temporary)
            _keep(temporary, target)
    except (OSError, sqlite3.Error) as exc:
        log.warning("template %s not saved: %s", target, exc)

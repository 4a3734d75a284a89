"""Fresh-state templates (services/common/templates.py): a fresh database is copied from a kept
template only when everything it depends on is the same, never over an existing database, and
gives the same schema as migrating; the bundled history's read is kept the same way."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from services.common import templates
from services.common.db import Database
from services.data.adapters import sample_history
from services.display import store as display_store


@pytest.fixture
def cache(tmp_path):
    templates.enable(tmp_path / "cache")
    yield tmp_path / "cache"
    templates.disable()


def schema_of(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()


def version_of(path: Path, service: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT version_num FROM alembic_version_{service}").fetchall()


def test_digest_changes_with_any_file_of_a_folder_and_with_each_part(tmp_path):
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "a.py").write_text("x = 1\n")
    first = templates.digest(folder, "part")
    assert templates.digest(folder, "part") == first
    (folder / "a.py").write_text("x = 2\n")
    assert templates.digest(folder, "part") != first
    changed = templates.digest(folder, "part")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.py").write_text("")
    assert templates.digest(folder, "part") != changed
    assert templates.digest(folder, "other part") != templates.digest(folder, "part")


def test_a_fresh_database_is_migrated_once_then_copied_with_the_same_schema(cache, tmp_path):
    first = Database(f"sqlite:///{tmp_path / 'one.db'}", display_store.SCHEMA)
    first.close()
    assert first.restored is None  # nothing kept yet: migrated, then kept
    key = templates.schema_key(display_store.SCHEMA)
    assert templates.path_of(key).is_file()

    second = Database(f"sqlite:///{tmp_path / 'two.db'}", display_store.SCHEMA)
    second.close()
    assert second.restored == key
    assert schema_of(tmp_path / "two.db") == schema_of(tmp_path / "one.db")
    assert version_of(tmp_path / "two.db", "display") == version_of(tmp_path / "one.db", "display")


def test_a_new_revision_makes_another_template(cache, tmp_path):
    versions = tmp_path / "versions"
    shutil.copytree(display_store.SCHEMA.versions, versions, ignore=shutil.ignore_patterns("__pycache__"))
    schema = replace(display_store.SCHEMA, versions=versions)
    Database(f"sqlite:///{tmp_path / 'one.db'}", schema).close()
    before = templates.schema_key(schema)
    (versions / "zz_note.txt").write_text("a file beside the revisions\n")
    assert templates.schema_key(schema) != before
    again = Database(f"sqlite:///{tmp_path / 'two.db'}", schema)
    again.close()
    assert again.restored is None  # migrated: the kept template is of another revision history
    assert not templates.path_of(before).exists()  # pruned: never asked for again
    assert templates.path_of(templates.schema_key(schema)).is_file()


def test_an_existing_database_is_never_replaced_by_a_template(cache, tmp_path):
    Database(f"sqlite:///{tmp_path / 'one.db'}", display_store.SCHEMA).close()
    seeded = Database(f"sqlite:///{tmp_path / 'seeded.db'}", display_store.SCHEMA, seeded="display-seeded-x")
    seeded.keep_as_template("display-seeded-x")
    seeded.close()
    existing = tmp_path / "existing.db"
    Database(f"sqlite:///{existing}", display_store.SCHEMA).close()
    with sqlite3.connect(existing) as connection:
        connection.execute("CREATE TABLE mine (x INTEGER)")
    reopened = Database(f"sqlite:///{existing}", display_store.SCHEMA, seeded="display-seeded-x")
    reopened.keep_as_template("display-seeded-x")  # not fresh: nothing kept
    reopened.close()
    assert reopened.restored is None
    assert ("table", "mine", "mine", "CREATE TABLE mine (x INTEGER)") in schema_of(existing)
    assert not any(row[1] == "mine" for row in schema_of(templates.path_of("display-seeded-x")))  # kept as it was


def test_a_seeded_template_is_used_only_under_its_own_key(cache, tmp_path):
    seeded = Database(f"sqlite:///{tmp_path / 'one.db'}", display_store.SCHEMA, seeded="display-seeded-aaa")
    assert seeded.restored is None
    with seeded.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE seeded (x INTEGER)")
    seeded.keep_as_template("display-seeded-aaa")
    seeded.close()

    same = Database(f"sqlite:///{tmp_path / 'two.db'}", display_store.SCHEMA, seeded="display-seeded-aaa")
    same.close()
    assert same.restored == "display-seeded-aaa"
    assert any(row[1] == "seeded" for row in schema_of(tmp_path / "two.db"))

    other = Database(f"sqlite:///{tmp_path / 'three.db'}", display_store.SCHEMA, seeded="display-seeded-bbb")
    other.close()
    assert other.restored == templates.schema_key(display_store.SCHEMA)  # the empty schema, not the seed
    assert not any(row[1] == "seeded" for row in schema_of(tmp_path / "three.db"))


def test_without_templates_nothing_is_kept_or_copied(tmp_path):
    templates.disable()
    database = Database(f"sqlite:///{tmp_path / 'one.db'}", display_store.SCHEMA, seeded="x")
    database.keep_as_template("x")
    database.close()
    assert database.restored is None
    assert templates.fresh_file(f"sqlite:///{tmp_path / 'new.db'}") is None


def test_the_bundled_history_is_read_again_when_its_files_change(cache, tmp_path, monkeypatch):
    files = [tmp_path / "sp500_dataset.csv.gz", tmp_path / "sp500_index.csv.gz"]
    for file in files:
        file.write_bytes(b"one")
    monkeypatch.setattr(sample_history, "_bundled_files", lambda: files)
    real_run, runs = subprocess.run, []

    def counted(*args, **kwargs):
        runs.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(sample_history.subprocess, "run", counted)
    first = sample_history.load_sample_history()
    again = sample_history.load_sample_history()
    assert len(runs) == 1  # the second read came from the cache
    assert again.digest == first.digest and again.closes == first.closes and again.securities == first.securities
    files[1].write_bytes(b"two")
    sample_history.load_sample_history()
    assert len(runs) == 2  # another file: read again


def test_a_database_file_left_with_its_log_is_not_fresh(cache, tmp_path):
    (tmp_path / "left.db-wal").write_bytes(b"a log of an earlier database")
    assert templates.fresh_file(f"sqlite:///{tmp_path / 'left.db'}") is None
    assert templates.fresh_file(f"sqlite:///{tmp_path / 'new.db'}") == tmp_path / "new.db"
    assert templates.fresh_file("sqlite://") is None
    assert templates.fresh_file("postgresql+psycopg://u:p@localhost/trader") is None


def _damage(kind: str, template: Path) -> None:
    """One kind of damage a kept template can suffer between two runs."""
    content = template.read_bytes()
    if kind == "truncated":
        template.write_bytes(content[: len(content) // 3])
    elif kind == "garbage":
        template.write_bytes(b"not a database at all" * 100)
    elif kind == "edited":  # one byte changed inside: still a readable file, not what was made
        middle = len(content) // 2
        template.write_bytes(content[:middle] + bytes([content[middle] ^ 0xFF]) + content[middle + 1:])
    elif kind == "no record":
        Path(f"{template}.sha256").unlink()
    elif kind == "empty":
        template.write_bytes(b"")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "edited", "no record", "empty"])
def test_a_damaged_template_is_never_copied_and_is_made_again(cache, tmp_path, kind, caplog):
    Database(f"sqlite:///{tmp_path / 'one.db'}", display_store.SCHEMA).close()
    key = templates.schema_key(display_store.SCHEMA)
    template = templates.path_of(key)
    _damage(kind, template)
    with caplog.at_level("WARNING", logger="trader.templates"):
        second = Database(f"sqlite:///{tmp_path / 'two.db'}", display_store.SCHEMA)
    second.close()
    assert second.restored is None  # migrated from the sources, not copied
    assert schema_of(tmp_path / "two.db") == schema_of(tmp_path / "one.db")
    assert version_of(tmp_path / "two.db", "display") == version_of(tmp_path / "one.db", "display")
    assert any(str(template) in record.getMessage() for record in caplog.records)  # named in the log
    third = Database(f"sqlite:///{tmp_path / 'three.db'}", display_store.SCHEMA)  # made again, and good
    third.close()
    assert third.restored == key
    assert schema_of(tmp_path / "three.db") == schema_of(tmp_path / "one.db")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "edited", "no record"])
def test_a_damaged_history_read_is_read_again(cache, tmp_path, monkeypatch, kind):
    files = [tmp_path / "sp500_dataset.csv.gz", tmp_path / "sp500_index.csv.gz"]
    for file in files:
        file.write_bytes(b"one")
    monkeypatch.setattr(sample_history, "_bundled_files", lambda: files)
    first = sample_history.load_sample_history()
    kept = next(cache.glob("sample-history-*.pickle"))
    _damage(kind, kept)
    again = sample_history.load_sample_history()  # no UnpicklingError: read from the bundled files again
    assert again.digest == first.digest and again.closes == first.closes
    assert templates.load(kept.name.removesuffix(".pickle"), ".pickle") is not None  # kept again, whole

"""Planner configurations as the planner stores them (planner.md section 2 "Configuration"): one
configuration per bucket of the portfolio (core and each satellite) and templates, each a TOML
text read over the default preset (config.py) plus, for a satellite, its sliders; every update
keeps the version it replaces in the history.

At the first start the store is seeded: `core` (bucket core) from the default preset, and the
three presets as templates (`default`, `conservative`, `aggressive`). The core's configuration
is the one the plan of the portfolio uses.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from services.common.db import Database
from services.common.errors import InvalidArgument, NotFound
from services.common.revisions import KeptReads
from services.planner import store
from services.planner.config import (
    PRESET_NAMES,
    ConfigError,
    PlannerConfig,
    check_sliders,
    effective,
    preset_text,
)

CORE = "core"
CORE_CONFIG_NAME = "core"
BUCKET_ID = re.compile(r"^[a-z0-9_-]{1,32}$")       # the portfolio's bucket ids
CONFIG_NAME = re.compile(r"^[A-Za-z0-9 _.-]{1,64}$")
MAX_HISTORY = 1000


@dataclass(frozen=True)
class StoredConfig:
    id: str
    name: str
    bucket_id: str | None          # None: a template
    toml: str
    sliders: dict[str, float]
    config: PlannerConfig          # the TOML over the default preset, sliders applied
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConfigVersion:
    name: str
    bucket_id: str | None
    toml: str
    sliders: dict[str, float]
    saved_at: datetime


@dataclass(frozen=True)
class ConfigUpdate:
    """What UpdatePlannerConfig asks for: the configuration (`config_id` or `bucket_id`) and
    what to change (None: unchanged)."""

    config_id: str = ""
    bucket_id: str = ""
    name: str | None = None
    toml: str | None = None
    preset: str | None = None
    sliders: Mapping[str, float] | None = None   # replaces the sliders; {} clears them


def _stored(row: store.PlannerConfigRow) -> StoredConfig:
    return StoredConfig(row.id, row.name, row.bucket_id, row.toml, json.loads(row.sliders),
                        _effective(row.toml, row.sliders), row.created_at, row.updated_at)


@lru_cache(maxsize=64)
def _effective(toml: str, sliders: str) -> PlannerConfig:
    """config.effective of a stored row's TOML and sliders (JSON), parsed once per distinct text:
    every plan reads the core's configuration, which changes only when it is updated (the key
    is the stored text itself, so an update is never served the configuration it replaced).
    PlannerConfig is frozen, so sharing it is safe."""
    return effective(toml, json.loads(sliders))


def _core(session) -> StoredConfig | None:
    row = store.find_config_by(session, bucket_id=CORE)
    return _stored(row) if row is not None else None


def _checked_toml(toml: str, sliders: Mapping[str, float]) -> None:
    try:
        effective(toml, sliders)
    except ConfigError as error:
        raise _refusal(error, "toml") from error


def _refusal(error: ConfigError, field: str) -> InvalidArgument:
    """The refusal naming the offending key once: `sliders.risk: ...`, `toml: not valid TOML`,
    `toml: planner.depth: ...` for a key inside the TOML."""
    if error.key.startswith("sliders") or error.key == field:
        return InvalidArgument(error.key, error.message)
    return InvalidArgument(field, str(error))


class ConfigEngine:
    def __init__(self, db: Database, bucket_kind):
        """`bucket_kind(id)` -> "core" or "satellite" from the portfolio (NotFound for none)."""
        self._db = db
        self._bucket_kind = bucket_kind
        self._kept = KeptReads(db.revisions, max_values=4)

    def seed(self, now: datetime) -> None:
        """The core's configuration and the preset templates, when the store has none."""
        with self._db.transaction() as session:
            if store.configs(session):
                return
            store.save_config(session, self._row(CORE_CONFIG_NAME, CORE, preset_text("default"), {}, now), now)
            for name in PRESET_NAMES:
                store.save_config(session, self._row(name, None, preset_text(name), {}, now), now)

    @staticmethod
    def _row(name: str, bucket_id: str | None, toml: str, sliders: Mapping[str, float],
             now: datetime) -> store.PlannerConfigRow:
        return store.PlannerConfigRow(id=str(uuid.uuid4()), name=name, bucket_id=bucket_id, toml=toml,
                                      sliders=json.dumps(dict(sliders), sort_keys=True), created_at=now,
                                      updated_at=now)

    def core(self) -> StoredConfig:
        """The configuration the portfolio's plan uses (every plan reads it: kept until the
        configurations change, services/common/revisions.py)."""
        with self._db.transaction() as session:
            found = self._kept.read(session, (store.PlannerConfigRow.__tablename__,), CORE, _core)
        if found is None:
            raise NotFound("the core bucket has no planner configuration")
        return found

    def list(self) -> list[StoredConfig]:
        with self._db.transaction() as session:
            return [_stored(row) for row in store.configs(session)]

    def get(self, config_id: str = "", bucket_id: str = "", name: str = "") -> StoredConfig:
        with self._db.transaction() as session:
            return _stored(self._find(session, config_id, bucket_id, name))

    def history(self, config_id: str, limit: int) -> list[ConfigVersion]:
        with self._db.transaction() as session:
            row = self._find(session, config_id, "", "")
            return [ConfigVersion(h.name, h.bucket_id, h.toml, json.loads(h.sliders), h.saved_at)
                    for h in store.config_history(session, row.id, limit)]

    def update(self, change: ConfigUpdate, now: datetime) -> StoredConfig:
        """Change a configuration (a bucket without one gets one, from the default preset);
        nothing is stored when any part is refused, or when nothing changes."""
        if change.toml is not None and change.preset is not None:
            raise InvalidArgument("preset", "give either toml or preset, not both")
        if change.preset is not None and change.preset not in PRESET_NAMES:
            raise InvalidArgument("preset", f"unknown preset {change.preset!r} (known: {', '.join(PRESET_NAMES)})")
        if change.name is not None and not CONFIG_NAME.match(change.name):
            raise InvalidArgument("name", "1-64 letters, digits, spaces, '_', '.' or '-'")
        if change.sliders is not None:
            try:
                check_sliders(change.sliders)
            except ConfigError as error:
                raise _refusal(error, "sliders") from error
        with self._db.transaction() as session:
            row, new = self._target(session, change, now)
            toml = preset_text(change.preset) if change.preset is not None else change.toml
            toml = row.toml if toml is None else toml
            sliders = json.loads(row.sliders) if change.sliders is None else check_sliders(change.sliders)
            if sliders and self._kind(row.bucket_id) != "satellite":
                raise InvalidArgument("sliders", "only a satellite bucket's configuration has sliders")
            _checked_toml(toml, sliders)
            name = row.name if change.name is None else change.name
            other = store.find_config_by(session, name=name)
            if other is not None and other.id != row.id:
                raise InvalidArgument("name", f"{name!r} is the name of another configuration")
            updated = self._row(name, row.bucket_id, toml, sliders, now)
            updated.id, updated.created_at = row.id, row.created_at
            if not new and (updated.name, updated.toml, updated.sliders) == (row.name, row.toml, row.sliders):
                return _stored(row)
            return _stored(store.save_config(session, updated, now))

    def _target(self, session, change: ConfigUpdate, now: datetime) -> tuple[store.PlannerConfigRow, bool]:
        """(the configuration to change, whether it is new)."""
        if bool(change.config_id) == bool(change.bucket_id):
            raise InvalidArgument("id", "give either id or bucket_id")
        if change.config_id:
            return self._find(session, change.config_id, "", ""), False
        bucket = _bucket_id(change.bucket_id)
        row = store.find_config_by(session, bucket_id=bucket)
        if row is not None:
            return row, False
        self._kind(bucket)  # NotFound when the portfolio has no such bucket
        name = bucket if store.find_config_by(session, name=bucket) is None else f"bucket {bucket}"
        return self._row(name, bucket, preset_text("default"), {}, now), True

    def _kind(self, bucket_id: str | None) -> str | None:
        return None if bucket_id is None else CORE if bucket_id == CORE else self._bucket_kind(bucket_id)

    @staticmethod
    def _find(session, config_id: str, bucket_id: str, name: str) -> store.PlannerConfigRow:
        given = [(f, v) for f, v in (("id", config_id), ("bucket_id", bucket_id), ("name", name)) if v]
        if len(given) != 1:
            raise InvalidArgument("id", "give exactly one of id, bucket_id or name")
        field, value = given[0]
        if field == "id":
            row = store.find_config(session, _config_id(value))
        elif field == "bucket_id":
            row = store.find_config_by(session, bucket_id=_bucket_id(value))
        else:
            row = store.find_config_by(session, name=value)
        if row is None:
            raise NotFound(f"no planner configuration with {field} {value[:64]!r}")
        return row


def _config_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError as exc:
        raise InvalidArgument("id", f"not a UUID: {text[:64]!r}") from exc


def _bucket_id(text: str) -> str:
    if not BUCKET_ID.match(text):
        raise InvalidArgument("bucket_id", f"not a bucket id (lowercase letters, digits, _ and -, up to 32): "
                                           f"{text[:64]!r}")
    return text

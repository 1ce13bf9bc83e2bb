"""The ``[[schedule]]`` tables of the config file, validated once into `Schedule` values.

Any mistake is one line naming the schedule and the field, e.g.
``schedule 'books': cron '61 * * * *': bad minute``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crawler.errors import ConfigError, SettingsError
from crawler.service.timetable import Timetable, check_cron, check_zone, stable_jitter
from crawler.settings import DEFAULT_CONFIG_FILE, load_settings, read_toml

Scalar = str | int | float | bool


class Schedule(BaseModel):
    """One recurring crawl: which spider, when (cron in a zone), and its run policies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    spider: str = Field(min_length=1)
    cron: str = Field(description="5 or 6 cron fields, or @hourly, @daily, @weekly, ...")
    timezone: str = "UTC"
    args: dict[str, Scalar] = Field(default_factory=dict, description="spider arguments (-a)")
    settings: dict[str, Scalar] = Field(default_factory=dict, description="settings (-s)")
    state: Path | None = None
    feed: str | None = Field(None, description="feed path; {run} becomes the run number")
    jitter_s: int = Field(0, ge=0, le=86_400)
    overlap: Literal["skip", "queue"] = "skip"
    misfire_grace_s: float | None = Field(None, ge=0, description="default: one period")
    max_runtime_s: float | None = Field(None, gt=0)
    min_items: int | None = Field(None, ge=0, description="fewer items mark a run degraded")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        check_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        check_zone(value)
        return value

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        try:
            load_settings(overrides=value)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("feed")
    @classmethod
    def _feed(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.format(run=1)
            except (KeyError, IndexError, ValueError):
                raise ValueError(f"{value!r} may hold {{run}} and no other {{...}}") from None
        return value

    def timetable(self) -> Timetable:
        return Timetable.parse(self.cron, self.timezone, stable_jitter(self.name, self.jitter_s))

    def grace(self) -> timedelta | None:
        return None if self.misfire_grace_s is None else timedelta(seconds=self.misfire_grace_s)

    def feed_for(self, run: int) -> Path | None:
        return None if self.feed is None else Path(self.feed.format(run=run))


def read_schedules(path: Path | None) -> list[Schedule]:
    """The schedules in the config file ``path`` (default ``config/crawler.toml``)."""
    path = path or DEFAULT_CONFIG_FILE
    data = read_toml(path)
    tables = data.get("schedule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"config file {path}: schedules are [[schedule]] tables")
    if not tables:
        raise ConfigError(f"config file {path} has no [[schedule]] tables")
    schedules = [_schedule(number, table) for number, table in enumerate(tables, 1)]
    _check_distinct(schedules)
    return schedules


def _schedule(number: int, table: dict[str, Any]) -> Schedule:
    name = table.get("name")
    label = f"schedule {name!r}" if isinstance(name, str) and name else f"schedule #{number}"
    try:
        return Schedule(**table)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "?"
        if error["type"] == "extra_forbidden":
            known = ", ".join(Schedule.model_fields)
            raise ConfigError(f"{label}: unknown key {field!r} (known: {known})") from None
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            raise ConfigError(f"{label}: {field} is required") from None
        raise ConfigError(f"{label}: {field}: {message}") from None


def _check_distinct(schedules: list[Schedule]) -> None:
    names: set[str] = set()
    states: dict[Path, str] = {}
    for schedule in schedules:
        if schedule.name in names:
            raise ConfigError(f"schedule {schedule.name!r}: the name is used twice")
        names.add(schedule.name)
        if schedule.state is None:
            continue
        # The state file is the unit of exclusion: two schedules on one state would lock out
        # each other's runs.
        key = schedule.state.resolve()
        if key in states:
            raise ConfigError(
                f"schedule {schedule.name!r}: state {schedule.state} is also "
                f"schedule {states[key]!r}'s"
            )
        states[key] = schedule.name

"""The compose deployment's shipped files: the scheduler's config validates and names spiders that
load. (Building and running the images is `scripts/compose-smoke`, outside the test suite.)"""

from __future__ import annotations

from pathlib import Path

from crawler import loader
from crawler.service.config import read_schedules
from crawler.settings import load_settings, read_config_file

ROOT = Path(__file__).resolve().parent.parent
SCHEDULE_CONFIG = ROOT / "config" / "schedule.toml"


def test_the_compose_schedule_config_is_valid() -> None:
    schedules = read_schedules(SCHEDULE_CONFIG)
    assert [s.name for s in schedules] == ["books"]
    for schedule in schedules:
        assert loader.load(schedule.spider, ROOT / "spiders").name == schedule.spider
        assert schedule.args["base_url"] == "http://sandbox:8765"  # the compose service
        assert schedule.state is not None
        assert schedule.state.parent == Path("/data")  # the crawl-data volume
    settings = load_settings(read_config_file(SCHEDULE_CONFIG))
    assert settings.per_host_concurrency == 4


def test_the_compose_file_runs_the_shipped_schedule_config() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert '["schedule", "--config", "/app/config/schedule.toml"]' in compose
    assert "http://127.0.0.1:9100/healthz" in compose
    assert 'CRAWLER_METRICS_PORT: "9100"' in compose


def _service(compose: str, name: str) -> str:
    """The text of one top-level service of the compose file."""
    block = compose.split(f"\n  {name}:\n", 1)[1]
    return block.split("\n\n", 1)[0]


def test_the_cluster_profile_keeps_the_documented_redis_persistence() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    redis = _service(compose, "redis")
    for flag in ('"--appendonly", "yes"', '"--appendfsync", "always"', "noeviction"):
        assert flag in redis
    # Other containers reach it with no password: a stock redis-server (Debian's) refuses them
    # unless protected mode is off (the official image only compiles it off).
    assert '"--protected-mode", "no"' in redis
    worker, exporter = _service(compose, "worker"), _service(compose, "exporter")
    for service in (redis, worker, exporter):
        assert 'profiles: ["cluster"]' in service
    for service in (worker, exporter):
        assert "redis://redis:6379/0" in service
        assert "- books-cluster\n" in service
    assert "- -o\n" in exporter
    assert "- -o\n" not in worker  # one exporter per crawl

"""Unit tests of crawler.settings: defaults, the precedence of layers, and one-line errors."""

import logging
import os
import re
from pathlib import Path

import pytest

from crawler.errors import ConfigError, SettingsError
from crawler.settings import (
    SCRAPY_HINTS,
    SCRAPY_NAMES,
    Settings,
    load_settings,
    parse_overrides,
    read_config_file,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A developer's CRAWLER_* variables or config/crawler.toml must not leak into these tests.
    for name in list(os.environ):
        if name.upper().startswith("CRAWLER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _write(tmp_path: Path, text: str, name: str = "crawler.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_polite() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.obey_robots is True
    assert settings.per_host_concurrency == 2
    assert settings.download_delay == 0.0
    assert settings.max_retry_after == 300.0
    assert settings.max_depth is None
    assert settings.max_pages is None


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.concurrency = 3  # type: ignore[misc]


def test_read_config_file_top_level_table(tmp_path: Path) -> None:
    path = _write(tmp_path, 'concurrency = 4\nuser_agent = "bot/1"\n')
    assert read_config_file(path) == {"concurrency": 4, "user_agent": "bot/1"}


def test_read_config_file_crawler_table(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawler]\nconcurrency = 4\n\n[other]\nx = 1\n")
    assert read_config_file(path) == {"concurrency": 4}


def test_read_config_file_default_path(tmp_path: Path) -> None:
    assert read_config_file(None) == {}
    (tmp_path / "config").mkdir()
    _write(tmp_path, "download_delay = 1.5\n", "config/crawler.toml")
    assert read_config_file(None) == {"download_delay": 1.5}


def test_read_config_file_missing(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cannot read config file .*nope\.toml"):
        read_config_file(tmp_path / "nope.toml")


def test_read_config_file_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "concurrency = = 4\n")
    with pytest.raises(SettingsError, match="is not valid TOML") as caught:
        read_config_file(path)
    assert isinstance(caught.value, ConfigError)
    assert str(path) in str(caught.value)


def test_read_config_file_crawler_not_a_table(tmp_path: Path) -> None:
    path = _write(tmp_path, 'crawler = "yes"\n')
    with pytest.raises(SettingsError, match=r"\[crawler\] must be a table"):
        read_config_file(path)


def test_precedence_of_every_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = read_config_file(
        _write(
            tmp_path,
            "[crawler]\nconcurrency = 2\nper_host_concurrency = 3\n"
            "download_delay = 1.0\nmax_retries = 5\nuser_agent = 'from-file'\n",
        )
    )
    monkeypatch.setenv("CRAWLER_PER_HOST_CONCURRENCY", "4")
    monkeypatch.setenv("CRAWLER_DOWNLOAD_DELAY", "2.0")
    monkeypatch.setenv("CRAWLER_MAX_RETRIES", "6")
    spider = {"download_delay": 3.0, "max_retries": 7}
    overrides = parse_overrides(["max_retries=8"])

    settings = load_settings(config, spider, overrides)

    assert settings.user_agent == "from-file"  # file over defaults
    assert settings.concurrency == 2  # file over defaults
    assert settings.per_host_concurrency == 4  # env over file
    assert settings.download_delay == 3.0  # spider over env
    assert settings.max_retries == 8  # overrides over spider
    assert settings.request_timeout == 30.0  # default, no layer sets it


def test_env_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_OBEY_ROBOTS", "false")
    monkeypatch.setenv("CRAWLER_MAX_DEPTH", "3")
    settings = load_settings()
    assert settings.obey_robots is False
    assert settings.max_depth == 3


def test_override_strings_are_coerced() -> None:
    settings = load_settings(overrides=parse_overrides(["obey_robots=false", "max_pages=10"]))
    assert settings.obey_robots is False
    assert settings.max_pages == 10


def test_config_does_not_leak_into_the_next_load() -> None:
    assert load_settings({"concurrency": 3}).concurrency == 3
    assert load_settings().concurrency == 16


@pytest.mark.parametrize(
    ("layer", "values", "message"),
    [
        ("config", {"concurrency": 0}, "bad setting concurrency=0: "),
        (
            "spider_settings",
            {"per_host_concurrency": "many"},
            "bad setting per_host_concurrency='many': ",
        ),
        ("overrides", {"download_delay": "-1"}, "bad setting download_delay='-1': "),
        ("overrides", {"log_level": "loud"}, "bad setting log_level='loud': "),
        ("overrides", {"max_response_bytes": "10"}, "bad setting max_response_bytes='10': "),
    ],
)
def test_bad_values_name_the_setting(layer: str, values: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**{layer: values})
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_bad_value_says_what_the_setting_means() -> None:
    with pytest.raises(SettingsError, match=r"\(requests in flight per host\)$"):
        load_settings(overrides={"per_host_concurrency": "0"})


def test_bad_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_CONCURRENCY", "abc")
    with pytest.raises(SettingsError, match=r"^bad setting concurrency='abc': "):
        load_settings()


@pytest.mark.parametrize("layer", ["config", "spider_settings", "overrides"])
def test_unknown_name_suggests_the_close_one(layer: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**{layer: {"concurency": 3}})
    assert str(caught.value) == "unknown setting 'concurency'; did you mean 'concurrency'?"


def test_unknown_name_without_a_close_one() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"zzz": "1"})
    assert str(caught.value) == "unknown setting 'zzz'"


def test_parse_overrides() -> None:
    pairs = ["concurrency=8", " user_agent = my bot ", "log_level=", "x=a=b"]
    assert parse_overrides(pairs) == {
        "concurrency": "8",
        "user_agent": "my bot",
        "log_level": "",
        "x": "a=b",
    }
    assert parse_overrides([]) == {}


@pytest.mark.parametrize("pair", ["concurrency", "=8", " =8", ""])
def test_parse_overrides_errors(pair: str) -> None:
    with pytest.raises(
        SettingsError, match=r"expected key=value, e\.g\. -s concurrency=8"
    ) as caught:
        parse_overrides(["ok=1", pair])
    assert repr(pair) in str(caught.value)


def test_shipped_config_file_and_readme_match_the_model() -> None:
    """config/crawler.toml holds the defaults, and the README's table names every setting."""
    root = Path(__file__).resolve().parent.parent
    shipped = read_config_file(root / "config" / "crawler.toml")
    defaults = Settings().model_dump()
    assert {k: defaults[k] for k in shipped} == shipped
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert [name for name in Settings.model_fields if f"| `{name}` |" not in readme] == []


@pytest.mark.parametrize(
    "scrapy_name", sorted(name for name, ours in SCRAPY_NAMES.items() if name.lower() != ours)
)
def test_a_scrapy_setting_name_points_to_ours(scrapy_name: str) -> None:
    ours = SCRAPY_NAMES[scrapy_name]
    assert ours in Settings.model_fields
    hint = f"unknown setting {scrapy_name!r}; did you mean {ours!r}?"
    with pytest.raises(SettingsError, match=re.escape(hint)):
        load_settings(overrides={scrapy_name: "1"})


@pytest.mark.parametrize(
    ("scrapy_name", "pointer"),
    [
        ("ITEM_PIPELINES", "spider's pipelines attribute"),
        ("DEFAULT_REQUEST_HEADERS", "Request(url, headers="),
        ("HTTPERROR_ALLOWED_CODES", "handle_httpstatus_list"),
        ("FEEDS", "-o items.jsonl"),
        ("HTTPCACHE_ENABLED", "no HTTP cache"),
        ("DOWNLOADER_MIDDLEWARES", "no middleware chain (README: Porting from Scrapy)"),
        ("SPIDER_MIDDLEWARES", "no middleware chain (README: Porting from Scrapy)"),
        ("LOG_FILE", "stderr"),
        ("JOBDIR", "--state"),
    ],
)
@pytest.mark.parametrize("layer", ["config", "spider_settings", "overrides"])
def test_a_scrapy_setting_without_a_counterpart_says_what_does_its_work(
    layer: str, scrapy_name: str, pointer: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**{layer: {scrapy_name: "1"}})
    message = str(caught.value)
    assert (
        message
        == f"unknown setting {scrapy_name!r} (a Scrapy setting): " + SCRAPY_HINTS[scrapy_name]
    )
    assert pointer in message
    assert "\n" not in message


@pytest.mark.parametrize("scrapy_name", sorted(SCRAPY_HINTS))
def test_a_scrapy_hint_names_no_setting_and_only_readme_sections_that_exist(
    scrapy_name: str,
) -> None:
    assert scrapy_name not in SCRAPY_NAMES
    assert scrapy_name.lower() not in Settings.model_fields
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for section in re.findall(r"README: ([A-Z][\w ]+)\)", SCRAPY_HINTS[scrapy_name]):
        assert f"\n## {section}\n" in readme


LAYERS = ["config", "env", "spider_settings", "overrides"]  # lowest first


def _layer_values(
    monkeypatch: pytest.MonkeyPatch, layers: dict[str, tuple[str, float]]
) -> dict[str, dict[str, object]]:
    """Each layer sets ``download_delay`` spelt as given; the environment through a variable."""
    values: dict[str, dict[str, object]] = {}
    for layer, (spelling, delay) in layers.items():
        if layer == "env":
            monkeypatch.setenv(
                f"{'CRAWLER' if spelling.isupper() else 'crawler'}_{spelling}", str(delay)
            )
        else:
            values[layer] = {spelling: delay if layer != "overrides" else str(delay)}
    return values


@pytest.mark.parametrize("low_spelling", ["download_delay", "DOWNLOAD_DELAY"])
@pytest.mark.parametrize("high_spelling", ["download_delay", "DOWNLOAD_DELAY", "Download_Delay"])
@pytest.mark.parametrize(
    ("low", "high"), [(a, b) for i, a in enumerate(LAYERS) for b in LAYERS[i + 1 :]]
)
def test_each_pair_of_layers_keeps_its_order_whatever_the_case(
    monkeypatch: pytest.MonkeyPatch, low: str, high: str, low_spelling: str, high_spelling: str
) -> None:
    values = _layer_values(monkeypatch, {low: (low_spelling, 1.0), high: (high_spelling, 2.0)})
    assert load_settings(**values).download_delay == 2.0  # type: ignore[arg-type]
    if high != "env":  # the lower layer alone is read too
        del values[high]
        assert load_settings(**values).download_delay == 1.0  # type: ignore[arg-type]


def test_upper_case_names_are_read_from_the_config_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawler]\nCONCURRENCY = 4\nUser_Agent = 'bot/2'\n")
    settings = load_settings(read_config_file(path))
    assert (settings.concurrency, settings.user_agent) == (4, "bot/2")


@pytest.mark.parametrize("layer", ["config", "spider_settings", "overrides"])
def test_one_name_spelt_twice_in_a_layer_is_refused(layer: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**{layer: {"concurrency": 3, "CONCURRENCY": 4}})
    assert "setting 'concurrency' is given twice in " in str(caught.value)
    assert "as 'concurrency' and 'CONCURRENCY'" in str(caught.value)


@pytest.mark.parametrize("layer", ["config", "spider_settings", "overrides"])
@pytest.mark.parametrize("spelling", ["CONCURRENT_REQUESTS", "concurrent_requests"])
def test_a_scrapy_name_gets_ours_from_every_layer(layer: str, spelling: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**{layer: {spelling: 3}})
    assert str(caught.value) == f"unknown setting {spelling!r}; did you mean 'concurrency'?"


def test_a_scrapy_name_from_the_config_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "[crawler]\nROBOTSTXT_OBEY = false\n")
    with pytest.raises(SettingsError, match="did you mean 'obey_robots'"):
        load_settings(read_config_file(path))


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("CRAWLER_CONCURRENT_REQUESTS", "; did you mean CRAWLER_CONCURRENCY?"),
        ("CRAWLER_ROBOTSTXT_OBEY", "; did you mean CRAWLER_OBEY_ROBOTS?"),
        ("crawler_concurency", "; did you mean CRAWLER_CONCURRENCY?"),
        ("CRAWLER_ZZZ_UNRELATED", ""),
        ("CRAWLER_JOBDIR", " (a Scrapy setting): " + SCRAPY_HINTS["JOBDIR"]),
    ],
)
def test_an_unknown_env_variable_warns_and_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, hint: str
) -> None:
    monkeypatch.setenv(variable, "3")
    with caplog.at_level(logging.WARNING, logger="crawler.settings"):
        assert load_settings() == Settings()
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring environment variable {variable}: no such setting{hint}"
    ]


@pytest.mark.parametrize(
    "text", ["title,price", " title , price ,", '["title", "price"]', ' ["title","price"]']
)
def test_a_list_setting_from_text(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    assert load_settings(overrides={"feed_fields": text}).feed_fields == ["title", "price"]
    monkeypatch.setenv("CRAWLER_FEED_FIELDS", text)
    monkeypatch.setenv("CRAWLER_SENSITIVE_HEADERS", text)
    settings = load_settings()
    assert settings.feed_fields == settings.sensitive_headers == ["title", "price"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('["title", ', "not a JSON list; or give names separated by commas"),
        ("title,title", "list each field once, by name"),
        ("", "list each field once, by name"),
    ],
)
def test_a_bad_list_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, text: str, why: str
) -> None:
    monkeypatch.setenv("CRAWLER_FEED_FIELDS", text)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"bad setting feed_fields={text!r}: ")
    assert why in str(caught.value)

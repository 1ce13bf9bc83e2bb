"""The ``crawler`` command line: run, runs, status, stop, list, new, fetch, shell, sandbox, demo
and schedule."""

from __future__ import annotations

import gc
import json
import keyword
import logging
import os
import re
import sys
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import click

# Only what every command needs is imported here; the crawl stack (the runner, the fetcher and
# their libraries, the settings model) is imported by the commands that use it, so that
# `crawler --help` and `crawler list` answer at once. tests/test_startup.py keeps it so.
from crawler import loader, runs, summary
from crawler.errors import (
    AddressRefused,
    ConfigError,
    CrawlerError,
    FetchError,
    SettingsError,
    SkipReason,
    SpiderLoadError,
    first_error,
)
from crawler.logs import SafeFormatter

if TYPE_CHECKING:
    import asyncio

    from crawler.fetcher import Fetcher
    from crawler.response import Response
    from crawler.runner import CrawlJob, CrawlResult
    from crawler.settings import Settings

T = TypeVar("T")

SPIDER_TEMPLATE = '''"""The {title} spider."""

from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider


class {cls}(Spider):
    name = {name}
    start_urls = [{url}]
    allowed_domains = [{domain}]

    async def parse(self, response: Response) -> AsyncIterator[Request | dict[str, Any]]:
        yield {{"url": response.url, "title": response.css("title::text").get("").strip()}}
        for request in response.follow_all(css="a[href]"):
            yield request
'''


# What a start URL written into a spider file may not hold (it is written with repr() anyway).
_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f-\x9f\"'\\`]")


STOPPED_EARLY = "stopped before the crawl began; nothing was lost"

# Loggers that -s log_level=... sets; every other library's stays at WARNING.
OUR_LOGGERS = ("crawler", "crawler_spiders")


def _fail(message: str, code: int = summary.EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _stopped_early() -> NoReturn:
    click.echo(STOPPED_EARLY, err=True)
    sys.exit(summary.EXIT_STOPPED)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's, where it is installed (it is a dependency except on Windows)."""
    try:
        import uvloop  # noqa: PLC0415 - optional: absent on Windows
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed."""
    import asyncio  # noqa: PLC0415 - as the crawl stack: by the commands that run a loop

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner_:
            return runner_.run(coro)
    except CrawlerError as exc:
        _fail(str(exc), exc.exit_code)  # 2 bad input, 4 locked, 1 a crawl that broke
    except BaseExceptionGroup as group:
        # A crawl of several tasks (a shared crawl's worker and its feed, --workers' children)
        # that broke on one of our errors: that one line, as for a single task.
        if (error := first_error(group)) is None:
            raise
        _fail(str(error), error.exit_code)


spiders_dir_option = click.option(
    "--spiders-dir",
    type=click.Path(path_type=Path),
    default=loader.DEFAULT_SPIDERS_DIR,
    show_default=True,
    help="Folder of spider files.",
)
settings_option = click.option(
    "-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting."
)
config_option = click.option(
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    help="Settings file (default: config/crawler.toml if present).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crawler")
def main() -> None:
    """An asynchronous web crawler: polite, fast, and safe to stop and resume."""


@main.command()
@click.argument("spider")
@settings_option
@click.option("-a", "arguments", multiple=True, metavar="KEY=VALUE", help="Spider argument.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Feed file: .jsonl (or .jl), .json or .csv, appended to (resumed with --state); "
    "- for JSON lines on stdout.",
)
@click.option(
    "-O",
    "--overwrite-output",
    type=click.Path(path_type=Path),
    help="As -o, but the file is started anew, with every item the state holds.",
)
@click.option(
    "--state",
    type=click.Path(path_type=Path, readable=False),  # checked by the runner, in one line
    help="State file; the same file resumes.",
)
@click.option(
    "--stats",
    "stats_file",
    type=click.Path(path_type=Path),
    help="Write this run's stats, with the totals over its state's runs, as JSON.",
)
@config_option
@spiders_dir_option
@click.option("--progress/--no-progress", default=True, help="Live status line on a terminal.")
@click.option(
    "--trigger",
    type=click.Choice([str(trigger) for trigger in runs.Trigger]),
    default=str(runs.Trigger.MANUAL),
    show_default=True,
    help="Why this run starts, for the run history (crawler schedule sets it).",
)
@click.option(
    "--scheduled-for",
    metavar="ISO",
    help="The time a schedule meant this run for, e.g. 2026-12-05T12:00:00Z (history only).",
)
@click.option(
    "--frontier",
    metavar="URL",
    help="Share the crawl between workers: redis://[:password@]host:port/db, rediss:// or "
    "unix:///path (the frontier setting).",
)
@click.option("--crawl-id", metavar="ID", help="The shared crawl's name (default: the spider's).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Start N worker processes of the shared crawl; this one writes the feed (-o).",
)
# A --workers child: the frontier's URL is in CRAWLER_FRONTIER (not on a command line ps shows),
# and counts as --frontier, above the spider's custom_settings.
@click.option("--frontier-from-env", is_flag=True, hidden=True)
# A --workers child's place among them, "2/3": its log lines and summary say [worker 2/3].
@click.option("--worker-index", metavar="I/N", hidden=True)
def run(
    *,
    spider: str,
    overrides: tuple[str, ...],
    arguments: tuple[str, ...],
    output: Path | None,
    overwrite_output: Path | None,
    state: Path | None,
    stats_file: Path | None,
    config: Path | None,
    spiders_dir: Path,
    progress: bool,
    trigger: str,
    scheduled_for: str | None,
    frontier: str | None,
    crawl_id: str | None,
    workers: int | None,
    frontier_from_env: bool,
    worker_index: str | None,
) -> None:
    """Crawl with SPIDER (a name in the spiders folder, or a path to a .py file).

    Exit codes: 0 finished, 1 crashed or failed, 2 bad input, 3 stopped (resumable),
    4 the state is in use by another run, 130 stopped at once (second Ctrl-C)."""
    if output is not None and overwrite_output is not None:
        _fail("-o appends and -O overwrites: give one of them")
    output = output or overwrite_output
    if frontier_from_env:
        frontier = os.environ.get("CRAWLER_FRONTIER") or _fail("CRAWLER_FRONTIER is not set")
    shared = {"frontier": frontier, "crawl_id": crawl_id}
    overrides += tuple(f"{key}={value}" for key, value in shared.items() if value is not None)
    broken: list[SpiderLoadError] = []
    # What start-up builds (modules, the settings model, the spider) lives as long as the
    # process: the collector's passes over it while it loads are wasted (about a tenth of the
    # import time), and once it is frozen out of the collector's sight, full collections stay
    # short.
    gc.disable()
    # Until the crawl's own signal handlers are in place, a Ctrl-C is a KeyboardInterrupt here
    # (importing the crawl stack and the spider takes a while): nothing has been fetched or
    # written yet.
    try:
        import asyncio  # noqa: PLC0415 - with the crawl stack

        from crawler import runner  # noqa: PLC0415 - the crawl stack, for this command only
        from crawler.settings import parse_overrides  # noqa: PLC0415 - with the runner

        job = runner.CrawlJob(
            spider=loader.load(spider, spiders_dir, broken),
            overrides=parse_overrides(list(overrides)),
            arguments=_spider_arguments(arguments),
            feed=output,
            overwrite_feed=overwrite_output is not None,
            state=state,
            stats=stats_file,
            config=config,
            progress=progress,
            trigger=runs.Trigger(trigger),
            scheduled_for=runs.parse_scheduled_for(scheduled_for) if scheduled_for else None,
        )
        settings = runner.resolve_settings(job)  # bad settings fail here, before anything opens
        _loop_factory()  # uvloop too is imported while a Ctrl-C means "nothing began"
        for error in broken:
            click.echo(f"warning: {error}; skipped", err=True)
        _configure_logging(settings.log_level, worker_index)
        if workers is not None and settings.frontier is None:
            _fail("--workers N shares one crawl between processes: give --frontier URL too")
    except CrawlerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _stopped_early()
    finally:
        gc.freeze()
        gc.enable()
    if settings.frontier is not None:
        _run_shared(
            job, settings, workers, spider=spider, spiders_dir=spiders_dir, index=worker_index
        )
    try:
        result = _run_async(runner.run(job, settings))
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("stopped at once; the state holds everything committed so far", err=True)
        sys.exit(summary.EXIT_FORCED)
    _summary(result, output)
    _totals(result)
    if result.stopped:
        hint = f" --state {state}" if state else " (no --state: this crawl cannot be resumed)"
        click.echo(f"stopped; run again with{hint} to resume", err=True)
    sys.exit(summary.exit_code(result.stats, stopped=result.stopped))


def _run_shared(
    job: CrawlJob,
    settings: Settings,
    count: int | None,
    *,
    spider: str,
    spiders_dir: Path,
    index: str | None,
) -> NoReturn:
    """``crawler run`` on a shared frontier: this process is one worker (and the exporter with
    -o), or with ``--workers N`` the parent of N of them. A child of ``--workers`` (``index``)
    prints its own summary, labelled; its parent prints the crawl's totals and the hint."""
    import asyncio  # noqa: PLC0415 - with the crawl stack

    from crawler import cluster, workers  # noqa: PLC0415 - the shared crawl, for this command only
    from crawler.stats import Stats  # noqa: PLC0415 - loaded by the crawl already

    crawl_id = cluster.crawl_id_of(settings, job.spider.name)
    if count is not None:
        command = workers.worker_command(
            spider,
            crawl_id=crawl_id,
            overrides={k: str(v) for k, v in job.overrides.items()},
            arguments=job.arguments,
            config=job.config,
            spiders_dir=spiders_dir,
            trigger=str(job.trigger),
        )
        code, found = _run_async(workers.run(job, settings, command, count))
        if found is not None:
            written = "" if job.feed is None else f"; {_written(job.feed)}"
            totals = Stats.from_dict(dict(found.get("stats") or {}))
            click.echo(cluster.totals_line(crawl_id, totals) + written, err=True)
        if code == summary.EXIT_STOPPED:
            click.echo(cluster.resume_hint(settings, crawl_id), err=True)
        sys.exit(code)
    try:
        result = _run_async(cluster.run(job, settings))
    except KeyboardInterrupt:
        _stopped_early()  # before the worker's own signal handlers were in place
    except asyncio.CancelledError:
        click.echo("stopped at once; the frontier holds everything committed so far", err=True)
        sys.exit(summary.EXIT_FORCED)
    _summary(result, job.feed, label=f"[worker {index}] " if index else "")
    if index is None:
        click.echo(cluster.totals_line(crawl_id, result.totals), err=True)
        if result.stopped:
            click.echo(cluster.resume_hint(settings, crawl_id), err=True)
    sys.exit(summary.exit_code(result.stats, stopped=result.stopped))


def _configure_logging(level: str, worker_index: str | None = None) -> None:
    """``level`` for the crawler's and the spiders' loggers; WARNING for every other library
    (aiosqlite, asyncio, httpx, aiohttp...), whose DEBUG lines would bury ours. A child of
    ``--workers`` labels its lines."""
    label = f"[worker {worker_index}] " if worker_index else ""
    handler = logging.StreamHandler()
    handler.setFormatter(
        SafeFormatter(f"%(asctime)s {label}%(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for ours in OUR_LOGGERS:
        logging.getLogger(ours).setLevel(level.upper())


def _spider_arguments(pairs: tuple[str, ...]) -> dict[str, str]:
    from crawler.settings import parse_overrides  # noqa: PLC0415 - the settings model

    try:
        return parse_overrides(list(pairs))
    except SettingsError:
        _fail("-a takes KEY=VALUE, e.g. -a category=poetry")


def _summary(result: CrawlResult, feed: Path | None, *, label: str = "") -> None:
    for line in summary.lines(result.stats, stopped=result.stopped, requeued=result.requeued):
        click.echo(label + line, err=True)
    if feed is not None:
        click.echo(_written(feed), err=True)


def _written(feed: Path) -> str:
    from crawler.exporters import STDOUT  # noqa: PLC0415 - loaded by the crawl already

    return f"items written to {'stdout' if feed == STDOUT else feed}"


def _totals(result: CrawlResult) -> None:
    """The run's place in the state's history, and the totals over every run of it."""
    if result.state is None:
        return
    run, total = result.run, result.totals
    resumed = f", resumed {run.resumes}x" if run.resumes else ""
    totals = (
        f"; totals over {run.id} runs: {total.pages_crawled} pages, {total.items_scraped} items,"
        f" {total.failures} failures in {total.elapsed_s:.1f}s"
        if run.id > 1
        else ""
    )
    click.echo(f"run {run.id} ({run.trigger}{resumed}): {run.outcome}{totals}", err=True)


@main.command(name="runs")
@click.option(
    "--state", type=click.Path(path_type=Path), required=True, help="State file of the crawl."
)
@click.option("--json", "as_json", is_flag=True, help="JSON: every run with its stats.")
def list_runs(state: Path, as_json: bool) -> None:
    """List the runs kept in a state file: trigger, times, outcome, exit code, counters."""
    from crawler import jsondata, runner  # noqa: PLC0415 - the state's reader, for this command

    try:
        history, holder = runner.run_history(state)
    except CrawlerError as exc:
        _fail(str(exc))
    if as_json:
        records = [run.to_dict() for run in history or []]
        click.echo(jsondata.dumps(records, indent=True))
        return
    if history is None:
        click.echo(f"no runs recorded in {state}: its crawler kept no run records", err=True)
        return
    if not history:
        click.echo(f"no runs recorded in {state} yet", err=True)
        return
    click.echo(runs.table(history, live=holder is not None))
    if holder is not None:
        click.echo(f"under way: {holder}", err=True)


frontier_option = click.option(
    "--frontier", metavar="URL", help="The crawl's frontier (default: the frontier setting)."
)


def _shared_settings(frontier: str | None, config: Path | None) -> Settings:
    settings = _settings(("frontier=" + frontier,) if frontier else (), config)
    if settings.frontier is None:
        _fail("no frontier: give --frontier redis://host:port/db (or unix:///path)")
    return settings


@main.command()
@click.argument("crawl_id", metavar="ID")
@frontier_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="JSON: state, counts, workers, stats.")
def status(crawl_id: str, frontier: str | None, config: Path | None, as_json: bool) -> None:
    """Show a shared crawl: its state, queue, leases, live workers and committed stats."""
    from crawler import cluster, jsondata  # noqa: PLC0415 - the shared crawl, for this command

    found = _run_async(cluster.status(_shared_settings(frontier, config), crawl_id))
    if as_json:
        click.echo(jsondata.dumps(found, indent=True))
        return
    for line in cluster.describe(crawl_id, found):
        click.echo(line)


@main.command()
@click.argument("crawl_id", metavar="ID")
@frontier_option
@config_option
def stop(crawl_id: str, frontier: str | None, config: Path | None) -> None:
    """Stop a shared crawl for every worker: requests in flight finish and are committed, then
    each worker exits 3. ``crawler run`` on the same ID resumes it."""
    from crawler import cluster  # noqa: PLC0415 - the shared crawl, for this command

    found = _run_async(cluster.stop(_shared_settings(frontier, config), crawl_id))
    click.echo(f"crawl {crawl_id}: {found.get('state')}", err=True)


@main.command(name="list")
@spiders_dir_option
def list_spiders(spiders_dir: Path) -> None:
    """List the spiders in the spiders folder."""
    broken: list[SpiderLoadError] = []
    found = loader.discover(spiders_dir, broken)
    for error in broken:
        click.echo(f"warning: {error}; skipped", err=True)
    for name, claims in loader.duplicates(found).items():
        click.echo(f"warning: {loader.duplicate_message(name, claims)}", err=True)
    if not found:
        click.echo(f"no spiders in {spiders_dir}/", err=True)
    for item in found:
        urls = ", ".join(item.spider.start_urls) or "(start_requests)"
        click.echo(f"{item.name:<20} {item.path}  {urls}")


@main.command()
@click.argument("name")
@click.argument("url")
@spiders_dir_option
def new(name: str, url: str, spiders_dir: Path) -> None:
    """Write a new spider NAME starting at URL into the spiders folder."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        _fail(f"spider name {name!r} must be lower-case letters, digits and _ (e.g. books)")
    if keyword.iskeyword(name):
        _fail(f"spider name {name!r} is a Python keyword: choose another (e.g. {name}_site)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        meant = f" (did you mean 'http://{url}'?)" if "://" not in url else ""
        _fail(f"start URL {url!r} must be an http:// or https:// URL{meant}")
    if _UNSAFE_IN_URL.search(url):
        _fail(f"start URL {url!r} holds quotes, backslashes, spaces or control characters")
    path = spiders_dir / f"{name}.py"
    if path.exists():
        _fail(f"{path} already exists")
    cls = "".join(part.title() for part in name.split("_")) + "Spider"
    spiders_dir.mkdir(parents=True, exist_ok=True)
    # JSON strings are Python strings, in double quotes as ruff format writes them.
    literals = {
        key: json.dumps(value)
        for key, value in (("name", name), ("url", url), ("domain", parts.hostname))
    }
    path.write_text(SPIDER_TEMPLATE.format(title=name, cls=cls, **literals))
    click.echo(f"wrote {path}; run it with: crawler run {name} -o {name}.jsonl")


@main.command()
@click.argument("url")
@click.option(
    "--css",
    "selector",
    help='Print what this selector matches: "h1::text", "a::attr(href)", or elements\' text.',
)
@click.option("--html", "as_html", is_flag=True, help="With --css, print elements' HTML.")
@settings_option
@config_option
def fetch(
    url: str, selector: str | None, as_html: bool, overrides: tuple[str, ...], config: Path | None
) -> None:
    """Fetch one page with the crawl's client and settings (for writing selectors); like a
    crawl, it obeys robots.txt unless -s obey_robots=false."""
    from crawler.fetcher import Fetcher  # noqa: PLC0415 - the crawl's client, for this command
    from crawler.robots import product_token  # noqa: PLC0415 - with the fetcher
    from crawler.selectors import SelectorError  # noqa: PLC0415 - with the fetcher

    settings = _settings(overrides, config)
    if urlsplit(url).scheme not in ("http", "https"):
        _fail(f"{url!r} is not an http:// or https:// URL")
    fetcher = Fetcher(settings)
    fetcher.guard.exempt_start(url)  # the page asked for is a start host, as in a crawl
    token = (
        (settings.robots_user_agent or product_token(settings.user_agent))
        if settings.obey_robots
        else None
    )
    response = _run_async(_fetch_one(fetcher, url, token))
    click.echo(f"{response.status} {response.url} ({len(response.body)} bytes)", err=True)
    if selector is None:
        click.echo(response.text)
        return
    try:
        found = response.css(selector)
    except SelectorError as exc:
        _fail(str(exc))
    for match in found:
        # A selected string (::text, ::attr) is printed as is; an element as text or HTML.
        root = match.root
        click.echo(
            root
            if isinstance(root, str)
            else match.get()
            if as_html
            else match.text(True, "", True)
        )


def _settings(overrides: tuple[str, ...], config: Path | None) -> Settings:
    from crawler.settings import (  # noqa: PLC0415 - the settings model, for the commands using it
        load_settings,
        parse_overrides,
        read_config_file,
    )

    try:
        return load_settings(read_config_file(config), None, parse_overrides(list(overrides)))
    except CrawlerError as exc:
        _fail(str(exc))


@main.command()
@click.argument("url", required=False)
@settings_option
@config_option
def shell(url: str | None, overrides: tuple[str, ...], config: Path | None) -> None:
    """An interactive console with response, request, fetch(url), view(response), settings."""
    from crawler.shell import Shell  # noqa: PLC0415 - only this command needs it

    settings = _settings(overrides, config)
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        _fail(f"{url!r} is not an http:// or https:// URL")
    with Shell(settings) as console:
        if url is not None:
            console.fetch(url)
        console.interact()


async def _fetch_one(fetcher: Fetcher, url: str, robots_token: str | None) -> Response:
    """The page at ``url``; with a ``robots_token``, only if robots.txt lets that crawler have
    it (as a crawl would)."""
    from crawler.request import Request  # noqa: PLC0415 - `crawler fetch` only
    from crawler.response import Response  # noqa: PLC0415 - `crawler fetch` only

    async def robots_check(hop: str) -> SkipReason | None:
        if robots_token is None or await _robots_allow(fetcher, hop, robots_token):
            return None
        return SkipReason.ROBOTS

    try:
        if await robots_check(url) is not None:
            raise CrawlerError(f"robots.txt disallows {url} for {robots_token!r}; {_OBEY_HINT}")
        result = await fetcher.fetch(Request(url), robots_check)
    finally:
        await fetcher.close()
    if not isinstance(result, Response):
        if result is SkipReason.ROBOTS:
            raise CrawlerError(f"redirect not followed: robots.txt disallows it; {_OBEY_HINT}")
        raise CrawlerError(f"redirect not followed: {result}")
    return result


_OBEY_HINT = "-s obey_robots=false fetches it anyway"


async def _robots_allow(fetcher: Fetcher, url: str, token: str) -> bool:
    """Whether the robots.txt of ``url``'s site lets crawler ``token`` fetch it (RFC 9309,
    as a crawl reads it); an unavailable robots.txt is an error, as it disallows all for now."""
    from crawler.request import Request  # noqa: PLC0415 - `crawler fetch` only
    from crawler.response import Response  # noqa: PLC0415 - `crawler fetch` only
    from crawler.robots import ROBOTS_MAX_BYTES, RobotsRules, robots_url  # noqa: PLC0415

    try:
        answer = await fetcher.fetch(Request(robots_url(url)), keep_bytes=ROBOTS_MAX_BYTES)
        if not isinstance(answer, Response):
            return True  # robots.txt redirects off-site: no rules, as in a crawl
        rules = RobotsRules.from_response(answer.status, answer.body)
    except AddressRefused:
        return True  # as in a crawl; the guard then refuses the page itself, and says why
    except FetchError as exc:
        raise CrawlerError(f"{robots_url(url)} unavailable ({exc}); {_OBEY_HINT}") from None
    return rules.allows(url, token)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--change-every",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Change some books this often: their price, so their pages' ETags move.",
)
@click.option(
    "--change-count",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="How many books each change touches (with --change-every).",
)
def sandbox(host: str, port: int, change_every: float | None, change_count: int) -> None:
    """Serve the offline demo bookstore until Ctrl-C."""
    from crawler.sandbox import SandboxServer  # noqa: PLC0415 - only this command needs it

    server = _bind(lambda: SandboxServer(host, port), f"{host}:{port}")
    if change_every is not None:
        try:
            server.change_every(change_every, change_count, _echo_changes)
        except ValueError as exc:
            server.stop()
            _fail(str(exc))
        click.echo(f"{change_count} books change every {change_every:g} s", err=True)
    click.echo(f"sandbox bookstore on {server.base_url}/ (Ctrl-C to stop)", err=True)
    server.serve_forever()


def _echo_changes(urls: list[str]) -> None:
    paths = ", ".join(urlsplit(url).path for url in urls)
    click.echo(f"changed {len(urls)} books: {paths}", err=True)


def _bind(make: Callable[[], T], where: str) -> T:
    try:
        return make()
    except OSError as exc:
        _fail(f"cannot listen on {where}: {exc.strerror}")


@main.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("books.jsonl"),
    show_default=True,
)
@spiders_dir_option
def demo(output: Path, spiders_dir: Path) -> None:
    """Serve the sandbox bookstore on loopback and crawl it with the books spider."""
    import asyncio  # noqa: PLC0415 - with the crawl stack

    from crawler import runner  # noqa: PLC0415 - the crawl stack, for this command only
    from crawler.sandbox import SandboxServer  # noqa: PLC0415 - only this command needs it

    try:
        spider = loader.load("books", spiders_dir)
    except CrawlerError as exc:
        _fail(f"{exc} (run the demo from the project folder)")
    with _bind(lambda: SandboxServer("127.0.0.1", 0), "127.0.0.1") as server:
        server.start()
        click.echo(f"sandbox bookstore on {server.base_url}/", err=True)
        job = runner.CrawlJob(
            spider=spider,
            arguments={"base_url": server.base_url},
            feed=output,
            overwrite_feed=True,  # each demo shows its own crawl
        )
        settings = runner.resolve_settings(job)
        _configure_logging(settings.log_level)
        try:
            result = _run_async(runner.run(job, settings))
        except (KeyboardInterrupt, asyncio.CancelledError):
            click.echo("stopped at once", err=True)
            sys.exit(summary.EXIT_FORCED)
    _summary(result, output)
    lines = output.read_text(encoding="utf-8").splitlines()
    click.echo(f"first items of {len(lines)} in {output}:", err=True)
    for line in lines[:3]:
        click.echo(line)
    sys.exit(summary.exit_code(result.stats, stopped=result.stopped))


@main.command()
@config_option
@spiders_dir_option
@click.option(
    "--history",
    type=click.Path(path_type=Path),
    help="Run history file (default: schedule-history.db beside the first schedule's state).",
)
@click.option(
    "--stop-timeout",
    "stop_timeout_s",
    type=click.FloatRange(min=0),
    default=50.0,
    show_default=True,
    help="Seconds runs get to finish after SIGINT/SIGTERM before they are killed.",
)
@click.option("--once", metavar="NAME", help="Run schedule NAME now, once; exit with its code.")
@click.option("--check", is_flag=True, help="Validate the schedules, print their next due times.")
def schedule(
    *,
    config: Path | None,
    spiders_dir: Path,
    history: Path | None,
    stop_timeout_s: float,
    once: str | None,
    check: bool,
) -> None:
    """Run the config file's [[schedule]] tables: one `crawler run` per due time, until Ctrl-C."""
    # Imported here: `crawler run`, which every scheduled run starts, needs none of it.
    from crawler.service import config as schedule_config  # noqa: PLC0415
    from crawler.service import daemon, runs  # noqa: PLC0415

    try:
        schedules = schedule_config.read_schedules(config)
        for entry in schedules:
            _check_schedule(entry.name, entry.spider, entry.state, entry.args, spiders_dir)
    except CrawlerError as exc:
        _fail(str(exc))
    if check:
        for entry in schedules:
            table, due = entry.timetable(), [datetime.now(UTC)]
            for _ in range(3):
                due.append(table.next_after(due[-1]))
            times = ", ".join(d.astimezone(table.zone).isoformat(" ") for d in due[1:])
            click.echo(f"{entry.name}: {entry.cron} ({entry.timezone}), next: {times}")
        return
    if once is not None and once not in {entry.name for entry in schedules}:
        known = ", ".join(entry.name for entry in schedules)
        _fail(f"no schedule {once!r} in the config file (it has: {known})")
    _configure_logging(_settings((), config).log_level)
    states = [entry.state for entry in schedules if entry.state is not None]
    history = history or (states[0].parent if states else Path()) / "schedule-history.db"
    launch = runs.Launch(config, spiders_dir)
    sys.exit(
        _run_async(
            daemon.serve(
                schedules,
                history,
                launch,
                once=once,
                stop_timeout_s=stop_timeout_s,
                settings=_settings((), config),
            )
        )
    )


def _check_schedule(
    name: str, spider: str, state: Path | None, args: Mapping[str, object], spiders_dir: Path
) -> None:
    """What would make every run of a schedule fail, found at start-up instead."""
    from crawler.spider import check_arguments  # noqa: PLC0415 - loaded with the spider

    try:
        spider_class = loader.load(spider, spiders_dir)
    except CrawlerError as exc:
        raise ConfigError(f"schedule {name!r}: spider: {exc}") from None
    try:
        check_arguments(spider_class, args)
    except CrawlerError as exc:
        raise ConfigError(f"schedule {name!r}: args: {exc}") from None
    if state is not None and not state.parent.is_dir():
        raise ConfigError(f"schedule {name!r}: state: folder {state.parent} does not exist")

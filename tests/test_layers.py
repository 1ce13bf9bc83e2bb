"""The architecture, pinned: imports flow one way, each library lives in one place, and the
public API is what ``crawler.__all__`` says."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import crawler

PACKAGE = Path(crawler.__file__).parent
ROOT = PACKAGE.parent

# Lowest first, as STYLE.md draws them. A module may import crawler modules of a strictly lower
# layer only, save for the pairs in SAME_LAYER.
LAYERS: dict[str, int] = {
    # leaves
    "crawler.errors": 0,
    "crawler.urls": 0,
    "crawler.dedup": 0,
    "crawler.jsondata": 0,
    "crawler.sniffing": 0,
    "crawler.parse_worker": 0,
    "crawler.encoding": 0,
    "crawler.logs": 0,
    "crawler.signals": 0,
    "crawler.freshness": 0,
    # models
    "crawler.request": 1,
    "crawler.settings": 1,
    "crawler.stats": 1,
    "crawler.sitemaps": 1,
    "crawler.selectors": 1,
    # policies and the user API; throttle is a policy in STYLE.md (it buffers Requests)
    "crawler.response": 2,
    "crawler.items": 2,
    "crawler.spider": 2,
    "crawler.sitemap_spider": 2,
    "crawler.robots": 2,
    "crawler.retry": 2,
    "crawler.scope": 2,
    "crawler.throttle": 2,
    "crawler.autothrottle": 2,
    "crawler.cookies": 2,
    "crawler.guard": 2,
    "crawler.links": 2,
    "crawler.rules": 2,
    "crawler.failure": 2,
    "crawler.summary": 2,
    "crawler.runs": 2,  # run records over stats, and how a run ended
    # adapters and tools; the transport is the fetcher's lower half
    "crawler.transport": 3,
    "crawler.fetcher": 3,
    "crawler.frontier": 3,
    "crawler.frontier.sqlite": 3,
    "crawler.frontier.sqlite_runs": 3,
    "crawler.lock": 3,
    "crawler.frontier.sqlite_history": 3,
    "crawler.frontier.redis": 3,
    "crawler.frontier.redis_codec": 3,
    "crawler.frontier.redis_log": 3,
    "crawler.frontier.redis_buffer": 3,
    "crawler.exporters": 3,
    "crawler.progress": 3,
    "crawler.bookstore": 3,
    "crawler.sandbox": 3,
    "crawler.loader": 3,
    "crawler.parsing": 3,
    "crawler.testing": 3,
    "crawler.lifecycle": 3,
    "crawler.spider_state": 3,
    "crawler.metrics": 3,
    "crawler.metrics.health": 3,
    "crawler.metrics.prometheus": 3,
    "crawler.metrics.server": 3,
    # the schedule service (crawler/service/, layout.md): a pure timetable, its config and
    # history, one run's child process, and the loop above them
    "crawler.service.timetable": 2,
    "crawler.service.config": 3,
    "crawler.service.history": 3,
    "crawler.service.runs": 4,
    # the crawl
    "crawler.admission": 4,
    "crawler.robots_cache": 4,
    "crawler.recrawl": 4,
    "crawler.scheduler": 4,
    "crawler.scheduler_remote": 4,
    "crawler.feed_tail": 4,
    "crawler.checkpoint": 4,
    "crawler.engine": 5,
    "crawler.runner": 6,
    "crawler.cluster": 6,
    "crawler.workers": 6,
    "crawler.shell": 6,
    "crawler.service": 6,
    "crawler.service.daemon": 6,
    "crawler.cli": 7,
    "crawler.__main__": 8,
    # The facade re-exports the API; nothing inside the package may import it.
    "crawler": 9,
}
PUBLIC_API_MAX_LAYER = 2
# The facade's one higher import: crawler.crawl() and friends, loaded on first use.
FACADE_RUNNER = "crawler.runner"

# (importer, imported) -> (type-only?, why it is allowed)
SAME_LAYER: dict[tuple[str, str], tuple[bool, str]] = {
    ("crawler.frontier.sqlite", "crawler.frontier"): (
        False,
        "a backend implements the package's Frontier protocol and its records",
    ),
    ("crawler.frontier.sqlite", "crawler.frontier.sqlite_runs"): (
        False,
        "the SQLite state's runs table",
    ),
    ("crawler.frontier.sqlite", "crawler.frontier.sqlite_history"): (
        False,
        "the SQLite backend's recrawl columns and statements",
    ),
    ("crawler.frontier.sqlite_history", "crawler.frontier"): (False, "it writes Outcomes"),
    ("crawler.frontier.redis", "crawler.frontier"): (
        False,
        "a backend implements the package's Frontier protocol and its records",
    ),
    ("crawler.frontier.redis", "crawler.frontier.redis_codec"): (
        False,
        "the Redis frontier's keys, records and commit arguments",
    ),
    ("crawler.frontier.redis_codec", "crawler.frontier"): (False, "it encodes Outcomes"),
    ("crawler.frontier.redis", "crawler.frontier.redis_log"): (False, "its reads, a mixin"),
    ("crawler.frontier.redis", "crawler.frontier.redis_buffer"): (False, "its writes, a mixin"),
    ("crawler.frontier.redis_buffer", "crawler.frontier"): (False, "it buffers Outcomes"),
    ("crawler.frontier.redis_buffer", "crawler.frontier.redis_codec"): (False, "into a Batch"),
    ("crawler.frontier.redis_log", "crawler.frontier"): (False, "it reads back Counts, robots"),
    ("crawler.frontier.redis_log", "crawler.frontier.redis_codec"): (False, "records, stats"),
    ("crawler.fetcher", "crawler.transport"): (False, "the fetcher's client runs on it"),
    ("crawler.scheduler_remote", "crawler.scheduler"): (
        False,
        "the shared frontier's scheduler is a Scheduler whose gate is remote",
    ),
    ("crawler.cluster", "crawler.runner"): (
        False,
        "a shared crawl's worker takes the runner's job, result and spider",
    ),
    ("crawler.workers", "crawler.runner"): (False, "the parent of workers reads the job"),
    ("crawler.workers", "crawler.cluster"): (False, "the parent of workers exports the feed"),
    ("crawler.summary", "crawler.runs"): (False, "a crawl's exit status is its run's"),
    ("crawler.sandbox", "crawler.bookstore"): (False, "the sandbox serves the bookstore's pages"),
    ("crawler.metrics.health", "crawler.metrics"): (False, "health reads a CrawlView"),
    ("crawler.metrics.prometheus", "crawler.metrics"): (False, "its collectors read the views"),
    ("crawler.metrics.server", "crawler.metrics"): (False, "it serves a view's metrics"),
    ("crawler.metrics.server", "crawler.metrics.health"): (False, "/healthz and the ticker"),
    ("crawler.metrics.server", "crawler.metrics.prometheus"): (False, "/metrics, loaded on use"),
    ("crawler.items", "crawler.spider"): (True, "the pipelines, and the spider they are given"),
    ("crawler.spider", "crawler.response"): (True, "Spider.parse takes a Response"),
    ("crawler.links", "crawler.response"): (True, "links are extracted from a Response"),
    ("crawler.rules", "crawler.links"): (False, "a Rule holds a LinkExtractor"),
    ("crawler.rules", "crawler.spider"): (False, "CrawlSpider is a Spider"),
    ("crawler.rules", "crawler.response"): (True, "rule callbacks take a Response"),
    ("crawler.rules", "crawler.failure"): (True, "rule errbacks take a Failure"),
    ("crawler.sitemap_spider", "crawler.spider"): (False, "a SitemapSpider is a Spider"),
    ("crawler.sitemap_spider", "crawler.response"): (True, "its sitemap callback takes one"),
    ("crawler.failure", "crawler.response"): (True, "Failure.response is a Response"),
}

# Each library that STYLE.md says lives in one place, and the modules that import it today.
# httpx: the client is only in the fetcher; Response.headers is an httpx.Headers (a
# case-insensitive multi-dict users read). tenacity: engine names RetryCallState for typing only.
LIBRARY_OWNERS: dict[str, set[str]] = {
    "httpx": {"crawler.fetcher", "crawler.response", "crawler.transport"},
    "selectolax": {"crawler.response", "crawler.selectors", "crawler.parse_worker"},
    # tenacity: fetch retries; the Redis frontier's calls ride out an outage with it.
    "tenacity": {"crawler.retry", "crawler.engine", "crawler.frontier.redis"},
    "redis": {"crawler.frontier.redis"},
    "aiosqlite": {"crawler.frontier.sqlite", "crawler.service.history"},
    "sqlite3": {"crawler.frontier.sqlite"},
    "click": {"crawler.cli"},
    "protego": {"crawler.robots"},
    "pydantic_settings": {"crawler.settings"},
    # aiohttp: the client under httpx in the transport; its web server for /metrics.
    "aiohttp": {"crawler.transport", "crawler.metrics.server"},
    "prometheus_client": {"crawler.metrics.prometheus"},
    "httpcore": {"crawler.transport"},
    "orjson": {"crawler.jsondata"},
    "webencodings": {"crawler.encoding"},
    "ada_url": {"crawler.urls"},
    "defusedxml": {"crawler.sitemaps"},
    "cronsim": {"crawler.service.timetable"},
    "fcntl": {"crawler.lock"},
}

PUBLIC_API = [
    "ConfigError",
    "CrawlResult",
    "CrawlSpider",
    "CrawlerError",
    "DropItem",
    "Failure",
    "FetchError",
    "HttpError",
    "ItemPipeline",
    "Link",
    "LinkExtractor",
    "Request",
    "Response",
    "Rule",
    "Selector",
    "SelectorList",
    "Settings",
    "SettingsError",
    "SitemapSpider",
    "SkipReason",
    "Spider",
    "SpiderError",
    "StateError",
    "crawl",
    "crawl_async",
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, tree: ast.Module) -> list[tuple[str, bool]]:
    """Every module ``module`` imports, anywhere in its body, with whether it is type-only."""
    found: list[tuple[str, bool]] = []
    is_package = module == "crawler" or (PACKAGE.parent / module.replace(".", "/")).is_dir()

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, type_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule if submodule in LAYERS else base, type_only))
        for inner in ast.iter_child_nodes(node):
            visit(inner, type_only)

    visit(tree, False)
    return found


def _graph() -> dict[str, list[tuple[str, bool]]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        graph[name] = _imports(name, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return graph


GRAPH = _graph()


def _internal(module: str) -> list[tuple[str, bool]]:
    return [(target, t) for target, t in GRAPH[module] if target.split(".")[0] == "crawler"]


def test_every_module_has_a_layer() -> None:
    assert set(GRAPH) == set(LAYERS)


@pytest.mark.parametrize("module", sorted(set(LAYERS) - {"crawler"}))
def test_imports_flow_one_way(module: str) -> None:
    wrong = []
    for target, type_only in _internal(module):
        if LAYERS[target] < LAYERS[module]:
            continue
        allowed = SAME_LAYER.get((module, target))
        if LAYERS[target] == LAYERS[module] and allowed and (type_only or not allowed[0]):
            continue
        kind = "type-only " if type_only else ""
        wrong.append(f"{kind}{target} (layer {LAYERS[target]})")
    assert not wrong, f"{module} (layer {LAYERS[module]}) may not import {wrong}"


def test_same_layer_pairs_still_exist() -> None:
    for importer, imported in SAME_LAYER:
        assert imported in {target for target, _ in _internal(importer)}, (importer, imported)


def test_no_runtime_import_cycles() -> None:
    runtime = {m: {t for t, type_only in _internal(m) if not type_only} for m in GRAPH}
    done: set[str] = set()

    def walk(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for target in runtime[module]:
            walk(target, (*path, module))
        done.add(module)

    for module in runtime:
        walk(module, ())


def test_the_facade_exports_models_and_the_user_api_only() -> None:
    targets = {target for target, _ in _internal("crawler")} - {FACADE_RUNNER}
    assert targets
    assert all(LAYERS[target] <= PUBLIC_API_MAX_LAYER for target in targets), targets


def test_importing_the_facade_does_not_load_the_runner() -> None:
    code = "import sys, crawler; assert 'crawler.runner' not in sys.modules; crawler.crawl"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)


@pytest.mark.parametrize("library", sorted(LIBRARY_OWNERS))
def test_each_library_lives_in_one_place(library: str) -> None:
    users = {
        module
        for module, imports in GRAPH.items()
        if any(target.split(".")[0] == library for target, _ in imports)
    }
    assert users == LIBRARY_OWNERS[library]


def test_every_third_party_import_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    declared = set()
    # An optional extra's library may be imported where ImportError is handled (IPython).
    for requirement in project["dependencies"] + [
        r for k, v in extras.items() if k != "dev" for r in v
    ]:
        name = requirement.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        declared.add(name.strip().lower().replace("-", "_"))
    used = {
        target.split(".")[0].lower()
        for imports in GRAPH.values()
        for target, _ in imports
        if target.split(".")[0] not in sys.stdlib_module_names | {"crawler", "__future__"}
    }
    assert used <= declared, used - declared


def test_public_api_is_pinned() -> None:
    assert crawler.__all__ == PUBLIC_API
    for name in PUBLIC_API:
        assert getattr(crawler, name).__module__.startswith("crawler."), name

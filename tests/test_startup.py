"""Quick start-up, pinned without a clock: which modules each command's path imports, the lazy
``crawler`` facade, and a Ctrl-C while ``crawler run`` is still importing."""

from __future__ import annotations

import ast
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import crawler
from crawler.cli import STOPPED_EARLY, main

ROOT = Path(crawler.__file__).resolve().parent.parent

# The crawl stack: what only a crawl (or `crawler fetch`) needs. Listing spiders, or asking for
# help, must load none of it.
CRAWL_STACK = frozenset(
    {
        "aiohttp",
        "aiosqlite",
        "cronsim",
        "httpcore",
        "httpx",
        "prometheus_client",
        "protego",
        "pydantic_settings",
        "redis",
        "tenacity",
        "uvloop",
        "crawler.engine",
        "crawler.fetcher",
        "crawler.runner",
        "crawler.settings",
    }
)
# Help loads no spider either: no pydantic (a Spider's item_model is one), no lexbor.
HELP_ALSO_SKIPS = frozenset({"pydantic", "selectolax", "crawler.spider", "crawler.response"})

# Runs the command line in a fresh interpreter as the console script does, then writes the
# names of the modules it imported to the file named by the first argument.
RUN_CLI = """
import json, sys
from pathlib import Path

out = Path(sys.argv.pop(1))
from crawler.__main__ import entry
try:
    entry()
except SystemExit as stop:
    code = stop.code
out.write_text(json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""


def imported_by(*args: str, cwd: Path) -> tuple[int, set[str]]:
    """The exit code of ``crawler ARGS`` and every module it imported."""
    report = cwd / "modules.json"
    subprocess.run(
        [sys.executable, "-c", RUN_CLI, str(report), *args],
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=True,
    )
    found = json.loads(report.read_text())
    return found["exit"], set(found["modules"])


def loaded(modules: set[str], forbidden: frozenset[str]) -> set[str]:
    return {name for name in forbidden if name in modules}


@pytest.mark.parametrize("command", [None, *sorted(main.commands)])
def test_help_imports_no_crawl_stack_and_no_spider(command: str | None, tmp_path: Path) -> None:
    args = ("--help",) if command is None else (command, "--help")
    code, modules = imported_by(*args, cwd=tmp_path)
    assert code == 0
    assert loaded(modules, CRAWL_STACK | HELP_ALSO_SKIPS) == set()
    assert "click" in modules  # the report does see what was imported


def test_list_imports_the_spiders_but_no_crawl_stack(tmp_path: Path) -> None:
    """The project's spiders import Request, Response, Spider, CrawlSpider, SitemapSpider and
    pydantic models: all of them load, and none of the crawl stack does."""
    code, modules = imported_by("list", "--spiders-dir", str(ROOT / "spiders"), cwd=tmp_path)
    assert code == 0
    assert {"crawler_spiders.books", "crawler_spiders.books_sitemap"} <= modules
    assert loaded(modules, CRAWL_STACK) == set()


def test_a_new_spider_files_imports_load_no_crawl_stack_and_no_pydantic(tmp_path: Path) -> None:
    spider = tmp_path / "spiders" / "quotes.py"
    new = [sys.executable, "-m", "crawler", "new", "quotes", "http://127.0.0.1:1/"]
    subprocess.run(new, cwd=tmp_path, capture_output=True, timeout=60, check=True)
    code = (
        f"import runpy, sys; runpy.run_path({str(spider)!r});print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules = set(done.stdout.split())
    assert "crawler.spider" in modules
    # pydantic too: the template has no item model (a spider that has one imports it itself).
    assert loaded(modules, CRAWL_STACK | {"pydantic"}) == set()


def _facade_homes() -> dict[str, str]:
    """What ``crawler/__init__.py`` imports for type checkers: each name and its module."""
    tree = ast.parse(Path(crawler.__file__).read_text(encoding="utf-8"))
    guard = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    )
    return {
        alias.name: node.module
        for node in guard.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def test_the_facade_loads_each_name_from_the_module_type_checkers_see() -> None:
    homes = _facade_homes()
    assert sorted(homes) == sorted(crawler.__all__)
    for name, home in homes.items():
        assert getattr(crawler, name) is getattr(importlib.import_module(home), name), name


def test_the_facade_lists_its_names_and_refuses_unknown_ones() -> None:
    assert set(crawler.__all__) <= set(dir(crawler))
    with pytest.raises(AttributeError, match="has no attribute 'Spidr'"):
        _ = crawler.Spidr  # type: ignore[attr-defined]


def test_importing_the_facade_loads_none_of_its_names() -> None:
    code = "import sys, crawler; print(' '.join(m for m in sys.modules if m.startswith('crawler')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["crawler"]


# Holds the import of one module (IMPORT_GATE_MODULE) at a FIFO the test keeps open, so that
# the test's SIGINT lands while `crawler run` is importing it.
IMPORT_GATE = """
import os, sys


class Gate:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["IMPORT_GATE_MODULE"]:
            sys.meta_path.remove(self)
            with open(os.environ["IMPORT_GATE"]) as gate:
                gate.read()
        return None


sys.meta_path.insert(0, Gate())
"""

UNREACHABLE_SPIDER = """
from crawler import Response, Spider


class Unreachable(Spider):
    name = "unreachable"
    start_urls = ["http://127.0.0.1:1/"]

    async def parse(self, response: Response) -> None:
        return None
"""


@pytest.mark.parametrize(
    "module",
    [
        "crawler.cli",  # imported by crawler.__main__.entry()
        "crawler.runner",  # the crawl stack, imported by `crawler run` itself
        "uvloop",  # the event loop, imported before the crawl's signal handlers are in place
    ],
)
def test_ctrl_c_while_run_imports_is_one_line_and_exit_3(module: str, tmp_path: Path) -> None:
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "unreachable.py").write_text(UNREACHABLE_SPIDER)
    (tmp_path / "gatepath").mkdir()
    (tmp_path / "gatepath" / "sitecustomize.py").write_text(IMPORT_GATE)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    path = os.pathsep.join(filter(None, [str(tmp_path / "gatepath"), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "unreachable", "--state", "crawl.db"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": path,
            "IMPORT_GATE": str(gate),
            "IMPORT_GATE_MODULE": module,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Opening a FIFO returns on both ends at once: the import has reached the gate. The signal
    # is pending in the child before the gate opens (closed, it reads the end of the file), so
    # the KeyboardInterrupt comes inside that import, however the child's threads are woken.
    with gate.open("w"):
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 3
    assert err.splitlines() == [STOPPED_EARLY]
    assert out == ""
    assert not (tmp_path / "crawl.db").exists()

"""Finding spiders: by name in a spiders folder, or by the path of a ``.py`` file."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from crawler.errors import SpiderLoadError

if TYPE_CHECKING:
    from crawler.spider import Spider

log = logging.getLogger("crawler.loader")

DEFAULT_SPIDERS_DIR = Path("spiders")


@dataclass(frozen=True)
class Found:
    name: str
    spider: type[Spider]
    path: Path


def _import(path: Path) -> ModuleType:
    module_name = f"crawler_spiders.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpiderLoadError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except OSError as exc:
        raise SpiderLoadError(f"cannot read {path}: {exc.strerror}") from None
    except Exception as exc:
        del sys.modules[module_name]
        raise SpiderLoadError(f"{path} does not import: {type(exc).__name__}: {exc}") from None
    return module


def spiders_in(path: Path) -> list[Found]:
    """The named Spider subclasses defined in one file."""
    # Loaded with the first spider file, not with this module: `crawler --help` needs neither.
    from crawler.spider import Spider  # noqa: PLC0415 - as said above

    module = _import(path)
    return [
        Found(obj.name, obj, path)
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Spider)
        and obj is not Spider
        and obj.name
        and obj.__module__ == module.__name__
    ]


def discover(
    folder: Path = DEFAULT_SPIDERS_DIR, broken: list[SpiderLoadError] | None = None
) -> list[Found]:
    """Every spider in a folder. Files that do not import are skipped, and collected in
    ``broken`` when given (logged otherwise)."""
    found: list[Found] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            found.extend(spiders_in(path))
        except SpiderLoadError as exc:
            if broken is None:
                log.warning("%s", exc)
            else:
                broken.append(exc)
    return found


def duplicates(spiders: list[Found]) -> dict[str, list[Found]]:
    """The names more than one spider class claims, with those spiders, in file order."""
    by_name: dict[str, list[Found]] = {}
    for found in spiders:
        by_name.setdefault(found.name, []).append(found)
    return {name: claims for name, claims in by_name.items() if len(claims) > 1}


def duplicate_message(name: str, claims: list[Found]) -> str:
    files = " and ".join(str(found.path) for found in claims)
    return f"spider name {name!r} is defined in {files}: rename one of them"


def load(
    target: str, folder: Path = DEFAULT_SPIDERS_DIR, broken: list[SpiderLoadError] | None = None
) -> type[Spider]:
    """The spider class named ``target``, or the one spider in the file at path ``target``.

    Other files of the folder that do not import do not stop it: they are collected in
    ``broken`` when given (logged otherwise), and named in the error if ``target`` is unknown.
    """
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise SpiderLoadError(f"no spider file {target}")
        found = spiders_in(path)
        if len(found) != 1:
            names = ", ".join(f.name for f in found) or "none"
            raise SpiderLoadError(f"{target} must define exactly one named Spider (found: {names})")
        return found[0].spider
    skipped: list[SpiderLoadError] = []
    spiders = discover(folder, skipped)
    named = [candidate for candidate in spiders if candidate.name == target]
    if len(named) > 1:
        raise SpiderLoadError(duplicate_message(target, named))
    if named:
        if broken is None:
            for error in skipped:
                log.warning("%s; skipped", error)
        else:
            broken.extend(skipped)
        return named[0].spider
    known = ", ".join(sorted(f.name for f in spiders)) or f"none in {folder}/"
    # The spider may well be in a file that does not import: say which, as a hint.
    unreadable = "".join(f"; skipped {error}" for error in skipped)
    raise SpiderLoadError(f"unknown spider {target!r} (known: {known}){unreadable}")

"""The code users copy passes the project's own checks: the README's Python blocks and the
spider ``crawler new`` writes are formatted, lint-clean (ruff) and typed (mypy --strict)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# A block's first line may name its file: "# spiders/titles.py (shortened)".
_NAMED = re.compile(r"#\s*([\w/]+\.py)\b")


def readme_blocks() -> dict[str, str]:
    """The README's ```python blocks, by the file they name (or an invented name)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for number, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.DOTALL)):
        named = _NAMED.match(block)
        blocks[named.group(1) if named else f"readme_block_{number}.py"] = block
    return blocks


def project_copy(folder: Path, files: dict[str, str]) -> list[str]:
    """``files`` written into a folder with the project's settings and spiders beside them
    (a block may import spiders.books); the paths written."""
    shutil.copy(ROOT / "pyproject.toml", folder)
    shutil.copytree(ROOT / "spiders", folder / "spiders", dirs_exist_ok=True)
    for name, code in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
    return list(files)


def check(folder: Path, paths: list[str]) -> None:
    for command in (
        [str(BIN / "ruff"), "format", "--check", "--diff", *paths],
        [str(BIN / "ruff"), "check", *paths],
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *paths],
    ):
        ran = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=120, check=False
        )
        assert ran.returncode == 0, f"{command[0]} {command[1]}:\n{ran.stdout}{ran.stderr}"


def test_the_readme_has_the_blocks_this_test_checks() -> None:
    blocks = readme_blocks()
    assert "spiders/titles.py" in blocks
    assert sum("(Spider)" in code for code in blocks.values()) >= 4


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_readme_python_blocks_pass_ruff_and_mypy_strict(tmp_path: Path) -> None:
    blocks = readme_blocks()
    check(tmp_path, project_copy(tmp_path, blocks))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_new_spider_template_passes_ruff_and_mypy_strict(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "crawler", "new", "shop_items", "https://shop.example/a?b=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    written = tmp_path / "spiders" / "shop_items.py"
    code = written.read_text(encoding="utf-8")
    assert code.startswith('"""The shop_items spider."""')
    assert "class ShopItemsSpider(Spider):" in code
    written.unlink()
    check(tmp_path, project_copy(tmp_path, {"spiders/shop_items.py": code}))

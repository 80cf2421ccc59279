"""The documentation runs: every shell block marked `<!-- runnable -->` in README.md and docs/, in order, as a user
types it (in a fresh directory that sees the repository's configs/), and every relative link points at a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import AS_A_DEFAULT_INSTALL_RUNS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"<!-- runnable -->\s*```bash\n(.*?)```", re.DOTALL)


def commands(page: Path) -> list[str]:
    """The page's runnable shell commands, continuation lines joined, comments dropped."""
    found = []
    for block in RUNNABLE.findall(page.read_text()):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split(" # ")[0].strip()
            if command and not command.startswith("#"):
                found.append(command)
    return found


RUN_PAGES = [page for page in PAGES if commands(page)]


@AS_A_DEFAULT_INSTALL_RUNS
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_runnable_commands_of_a_page_run_in_order(page, tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    for command in commands(page):
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"{page.name}: `{command}` failed:\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, command
        assert "Setting accelerator to CPU" not in result.stdout + result.stderr, command  # DeepSpeed's line is noise


def test_every_page_has_a_runnable_block_where_it_shows_commands_to_run():
    assert {page.name for page in RUN_PAGES} >= {"README.md", "walkthrough.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_point_at_files(page):
    for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
        if not target.startswith(("http://", "https://", "mailto:")):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"

"""docs/architecture.md is true: every module it names exists, and every import of the package points down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trl_adpo"
MAP = (ROOT / "docs" / "architecture.md").read_text()


def floors() -> dict[str, int]:
    """Module name (relative to trl_adpo, `__init__` for the package's own) -> floor, from the map's table."""
    table = MAP[MAP.index("| floor |") : MAP.index("\n\n", MAP.index("| floor |"))]
    found = {}
    for line in table.splitlines()[2:]:
        floor, _, modules = (cell.strip() for cell in line.strip("|").split("|"))
        package = re.match(r"`(\w+)` \(", modules)
        if package and (PACKAGE / package.group(1)).is_dir():  # `pipeline` (`io`, ...): the package's modules
            inside = re.findall(r"`(\w+)`", modules[modules.index("(") :])
            found.update({f"{package.group(1)}.{name}": int(floor) for name in inside})
            found[package.group(1)] = int(floor)
        else:
            found.update({name: int(floor) for name in re.findall(r"`(\w+)`(?: \(|,|$)", modules)})
    return found


def module_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1]) or "__init__" if parts[-1] == "__init__" else ".".join(parts)


def imports(path: Path) -> set[str]:
    """The package's modules that `path` imports (at the top or inside a function), relative to trl_adpo."""
    package = module_of(path).split(".")[:-1] if path.name != "__init__.py" else module_of(path).split(".")
    package = [] if package == ["__init__"] else package
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
            elif node.module and node.module.split(".")[0] == "trl_adpo":
                base = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                candidate = [*base, alias.name]
                is_module = (PACKAGE.joinpath(*candidate).with_suffix(".py")).is_file()
                found.add(".".join(candidate if is_module else base) or "__init__")
    return found - {module_of(path)}


def floor_of(module: str, table: dict[str, int]) -> int:
    return table.get(module, table.get(module.split(".")[0]))


def test_every_module_the_map_names_exists_and_every_module_is_on_a_floor():
    table = floors()
    for module in table:
        path = PACKAGE.joinpath(*module.split("."))
        assert path.with_suffix(".py").is_file() or path.is_dir() or module == "__init__", module
    for path in PACKAGE.rglob("*.py"):
        module = module_of(path)
        if path.name == "__init__.py" and module != "__init__":
            continue  # a subpackage's empty __init__
        assert module in table, f"{module} is on no floor of docs/architecture.md"


def test_every_import_points_down_the_floors():
    table = floors()
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_of(path)
        if path.name == "__init__.py" and module != "__init__":
            continue
        for target in imports(path):
            if floor_of(target, table) > floor_of(module, table):
                upward.append(
                    f"{module} (floor {floor_of(module, table)}) imports {target} (floor {floor_of(target, table)})"
                )
    assert not upward, upward


def test_the_map_finds_an_import_that_points_up(tmp_path, monkeypatch):
    """The check itself: an objective that imported the trainer would be caught."""
    fake = tmp_path / "trl_adpo"
    fake.mkdir()
    (fake / "objective.py").write_text("from .trainer import ADPOTrainer\n")
    (fake / "trainer.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert imports(fake / "objective.py") == {"trainer"}
    assert floor_of("trainer", floors()) > floor_of("objective", floors())

"""The arrows run one way: CLI → converters → training → kernel; server rooms (bentos, auth,
monitoring) → kernel. Checked on the source (lazy imports inside functions included), so a shortcut
across rooms fails here before it becomes a cycle or a Bento that drags the pipeline in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KERNEL = "textclf.core"
# room → the rooms it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    KERNEL: set(),
    "auth": {KERNEL},
    "monitoring": {KERNEL},
    "bentos": {"auth", "monitoring", KERNEL},
    "training": {KERNEL},
    "converters": {"training", "monitoring", KERNEL},  # the drift reference, written as the server reads it
    "batch": {KERNEL},
    "bench": {"auth", "monitoring", "converters", "batch", KERNEL},  # drift-eval; spark_run: batch.spark
}
ROOMS = {*ALLOWED, "textclf"}  # textclf (the CLI) may import every room


def room_of(module: str) -> str | None:
    if module == KERNEL or module.startswith(KERNEL + "."):
        return KERNEL
    top = module.split(".")[0]
    return top if top in ROOMS else None


def imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        rooms |= {room for name in names if (room := room_of(name)) is not None}
    return rooms


def sources(room: str) -> list[Path]:
    folder = REPO / room.replace(".", "/")
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_room_imports_only_what_it_may(room: str) -> None:
    assert sources(room), f"room {room} has no modules"
    wrong = {}
    for path in sources(room):
        found = imported_rooms(path) - ALLOWED[room] - {room}
        if found:
            wrong[str(path.relative_to(REPO))] = sorted(found)
    assert wrong == {}


def test_the_kernel_imports_no_heavy_library() -> None:
    heavy = {"torch", "transformers", "optimum", "sklearn", "mlflow", "dvc", "bentoml", "skl2onnx"}
    for path in sources(KERNEL):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & heavy, path

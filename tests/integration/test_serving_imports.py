"""The serving path stays lean: importing it must not pull in any training dependency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "torch",
    "transformers",
    "optimum",
    "sklearn",
    "mlflow",
    "dvc",
    "pandas",
    "training",
    "converters",
)

pytestmark = pytest.mark.integration  # trains a model or uses the BentoML store


def forbidden_after_import(modules: str, env: dict[str, str] | None = None) -> list[str]:
    """The forbidden modules loaded by importing `modules` (comma-separated) in a fresh interpreter."""
    script = (
        f"import json, sys; import {modules}; "
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_service_imports_only_serving_dependencies(trained_logreg) -> None:
    from converters.store import save_to_store

    tag = save_to_store(trained_logreg.onnx_dir("logreg"))  # the service resolves its model at import
    assert forbidden_after_import("bentos.service", {"TEXTCLF_MODEL": tag}) == []


def test_batch_client_imports_only_serving_dependencies() -> None:
    assert forbidden_after_import("batch.client") == []


def test_batch_client_is_not_part_of_the_bento() -> None:
    assert not (REPO / "bentos" / "batch.py").exists()
    assert (REPO / "batch" / "client.py").is_file()


def test_the_bento_carries_every_module_its_code_imports(built_bento: dict[str, str]) -> None:
    """A Bento runs from its own copy of the source (in its image, no editable install behind it): every
    project module its code imports, lazily or not, must be in that copy."""
    import ast

    import bentoml

    src = Path(bentoml.get(built_bento["bento"]).path) / "src"
    ours = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    missing = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] not in ours:
                    continue
                module = src.joinpath(*parts)
                if not (module.with_suffix(".py").is_file() or (module / "__init__.py").is_file()):
                    missing.add(f"{name} (imported by {path.relative_to(src)})")
    assert ours & {p.name for p in src.iterdir()}, "the Bento holds none of our packages"
    assert not missing, sorted(missing)

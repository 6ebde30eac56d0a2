"""`bentoml serve` as users type it, with no TEXTCLF_MODEL: a built Bento serves the model it was built
with, and `bentoml serve` in a source tree serves the pipeline's champion (what `make run` serves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, SECURITY_OFF, Workspace
from tests.helpers import bentoml_serve

pytestmark = pytest.mark.integration
SOURCE = ("bentofile.yaml", "bentos", "auth", "monitoring", "textclf/__init__.py", "textclf/core")


@pytest.fixture(scope="module")
def newer_model(
    built_bento: dict[str, str], trained_logreg: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Another version of the same family stored after the Bento's: now `textclf-logreg:latest`, so a
    server that fell back on "latest" instead of its own model would show it."""
    from converters.store import save_to_store

    folder = tmp_path_factory.mktemp("newer") / "logreg"
    shutil.copytree(trained_logreg.onnx_dir("logreg"), folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "version": "0" * 16}))
    tag = save_to_store(folder)
    assert tag != built_bento["model"]
    return tag


def served_model(url: str) -> str:
    info = httpx.get(f"{url}/model", timeout=30).json()
    return f"{info['name']}:{info['version']}"


def test_a_built_bento_serves_its_own_model(
    built_bento: dict[str, str], newer_model: str, tmp_path: Path
) -> None:
    with bentoml_serve(built_bento["bento"], dict(SECURITY_OFF), cwd=tmp_path) as url:
        assert served_model(url) == built_bento["model"]


def test_bentoml_serve_in_the_source_tree_serves_the_champion(
    built_bento: dict[str, str], newer_model: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    for name in SOURCE:
        source, target = REPO / name, project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    record = project / "artifacts" / "bento" / "champion.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps(built_bento))
    with bentoml_serve(".", dict(SECURITY_OFF), cwd=project) as url:  # `.` is `bentoml serve`'s default
        assert served_model(url) == built_bento["model"]

"""Which model a server started without TEXTCLF_MODEL serves (bentos/model_choice.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bentos.model_choice import NoModelError, default_model


def service_file(root: Path) -> Path:
    path = root / "bentos" / "service.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_a_built_bento_serves_the_model_it_was_built_with(tmp_path: Path) -> None:
    service = service_file(tmp_path / "src")
    info = {"services": [{"name": "textclf", "models": [{"tag": "textclf-bert-int8:abc"}]}], "models": []}
    (tmp_path / "bento.yaml").write_text(yaml.safe_dump(info))
    assert default_model(service) == "textclf-bert-int8:abc"


def test_a_bento_with_two_models_asks_which(tmp_path: Path) -> None:
    service = service_file(tmp_path / "src")
    models = [{"tag": "textclf-bert-int8:abc"}, {"tag": "textclf-logreg:def"}]
    (tmp_path / "bento.yaml").write_text(yaml.safe_dump({"services": [{"models": models}]}))
    with pytest.raises(NoModelError, match="lists 2 textclf models"):
        default_model(service)


def test_the_source_tree_serves_the_pipelines_champion(tmp_path: Path) -> None:
    service = service_file(tmp_path)
    record = tmp_path / "artifacts" / "bento" / "champion.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"bento": "textclf:x", "model": "textclf-lstm-int8:123"}))
    assert default_model(service) == "textclf-lstm-int8:123"
    record.write_text("{not json")
    with pytest.raises(NoModelError, match="unreadable"):
        default_model(service)


def test_nothing_to_serve_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NoModelError, match=r"set TEXTCLF_MODEL .* or run `make pipeline`"):
        default_model(service_file(tmp_path))

"""Export strategies: every trainable family has an exporter, chosen by name, and logreg's stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from converters.exporters import NoExporterError, exporter_for
from training.families import FAMILIES
from training.families.factory import family_class
from training.families.logreg import LogregFamily
from training.params import ExportParams


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_has_an_exporter(name: str) -> None:
    assert exporter_for(name).family == name
    assert family_class(name).input_kind in ("text", "tokens")


def test_an_unknown_family_is_refused_by_name() -> None:
    with pytest.raises(NoExporterError, match=r"no ONNX exporter for model family 'svm'.*logreg, lstm, bert"):
        exporter_for("svm")


def test_string_input_family_needs_no_tokenizer() -> None:
    model = LogregFamily()
    assert model.input_kind == "text"
    assert model.tokenizer is None and model.max_length is None and model.pad_id is None


def test_an_exporter_refuses_another_familys_model(tmp_path: Path) -> None:
    model = LogregFamily().fit(["aa bb", "cc dd"], ["x", "y"])
    with pytest.raises(TypeError, match="LstmFamily exporter cannot export a LogregFamily"):
        exporter_for("lstm").to_onnx(model, tmp_path, ExportParams())


def test_exporting_logreg_never_imports_torch() -> None:
    script = (
        "import sys; from pathlib import Path; from converters.exporters import exporter_for; "
        "from training.families.logreg import LogregFamily; from training.params import ExportParams; "
        "model = LogregFamily().fit(['aa bb', 'cc dd'], ['x', 'y']); "
        "assert exporter_for('logreg').to_onnx(model, Path('.'), ExportParams()); "
        "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"

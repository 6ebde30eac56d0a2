"""Export a trained family to ONNX model folders (fp32, and int8 where asked), proving parity.

fp32 must score like the source model (TF-IDF+LR: probabilities on the whole test split; PyTorch
families: logits on a test sample); int8 must agree with fp32 on the labels of the whole test split.
Any miss raises ParityError and stops the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from bentos.contract import (
    TOKENIZER_FILE,
    ModelMetadata,
    read_model_folder,
    write_metadata,
    write_model_folder,
)
from bentos.runtime import OnnxClassifier
from converters import parity
from converters.store import save_to_store
from training.data import batched, load_texts_labels
from training.families.base import ModelFamily
from training.families.factory import load_family
from training.params import Params
from training.train import RUN_FILE
from training.validate import PREPARED_LABEL, PREPARED_TEXT

CHUNK = 1024  # texts per model call during parity checks
# Per-family int8 choices (see converters.torch_onnx.quantize_int8 for the measurements behind BERT's).
# The first layer's fused attention stays float: the others quantised, labels agree with fp32 on
# ≥ 99.0% of the test set whatever the batch composition (98.7-99.2% with it quantised too).
INT8_OPTIONS: dict[str, dict] = {
    "bert": {"op_types": ["MatMul", "Attention"], "keep_float": ("pooler", "classifier", "Attention_0")}
}


def variant_name(family: str, precision: str) -> str:
    return family if precision == "fp32" else f"{family}-{precision}"


def _convert(model: ModelFamily, model_dir: Path, params: Params) -> bytes:
    if model.name == "logreg":
        from converters.sklearn_onnx import pipeline_to_onnx

        return pipeline_to_onnx(model.pipeline)  # type: ignore[attr-defined]
    from converters import torch_onnx

    if model.name == "lstm":
        return torch_onnx.lstm_to_onnx(model.model)  # type: ignore[attr-defined]
    if model.name == "bert":
        return torch_onnx.bert_to_onnx(model_dir, params.export.bert_optimization_level)
    raise ValueError(f"no ONNX converter for family {model.name!r}")


def _scores(score: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
    return np.concatenate([score(chunk) for chunk in batched(texts, CHUNK)])


def _write_variant(folder: Path, onnx_bytes: bytes, model: ModelFamily, metadata: ModelMetadata) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    version = hashlib.sha256(onnx_bytes).hexdigest()[:16]
    write_model_folder(folder, onnx_bytes, model.labels, replace(metadata, version=version))
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save(str(folder / TOKENIZER_FILE))


def _fp32_parity(model: ModelFamily, folder: Path, texts: list[str], params: Params) -> dict[str, float]:
    served = OnnxClassifier(folder)
    p = params.export
    if model.name == "logreg":
        report = parity.compare(_scores(model.predict_proba, texts), _scores(served.predict_proba, texts))
        parity.check(report, p.parity_min_label_agreement, p.parity_max_proba_diff)
        return report.as_dict()
    sample = texts[: p.parity_sample]
    source = model.logits(sample)  # type: ignore[attr-defined]
    report = parity.compare(source, served.output(sample, "logits"))
    parity.check(report, p.parity_min_label_agreement, p.parity_max_logit_diff)
    return report.as_dict()


def export(params: Params, model_dir: Path, out_dir: Path, reports_dir: Path) -> dict[str, dict[str, float]]:
    """Convert the model in `model_dir` into `out_dir/fp32` (and `out_dir/int8`); check parity; save
    each variant to the BentoML model store."""
    model = load_family(model_dir)
    run = json.loads((model_dir / RUN_FILE).read_text(encoding="utf-8"))
    data = json.loads((reports_dir / "data.json").read_text(encoding="utf-8"))
    base = ModelMetadata(
        family=model.name,
        version="",
        input_kind="text" if model.name == "logreg" else "tokens",
        data_sha256=data["data_sha256"],
        metrics={k: run["metrics"][k] for k in ("accuracy", "macro_f1") if k in run["metrics"]},
        max_length=getattr(model.hparams, "max_length", None),  # type: ignore[attr-defined]
        pad_id=getattr(model, "pad_id", None),
        mlflow_run_id=run["run_id"],
        registered_version=run["registered_version"],
    )
    texts, labels = load_texts_labels(params.data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    results: dict[str, dict[str, float]] = {}
    try:
        fp32 = _convert(model, model_dir, params)
        _write_variant(out_dir / "fp32", fp32, model, base)
        results["fp32"] = _fp32_parity(model, out_dir / "fp32", texts, params) | {"onnx_bytes": len(fp32)}
        if model.name in params.export.quantize:
            from converters.torch_onnx import quantize_int8

            int8 = quantize_int8(fp32, **INT8_OPTIONS.get(model.name, {}))
            _write_variant(out_dir / "int8", int8, model, replace(base, precision="int8"))
            int8_probs = _scores(OnnxClassifier(out_dir / "int8").predict_proba, texts)
            report = parity.compare(
                _scores(OnnxClassifier(out_dir / "fp32").predict_proba, texts), int8_probs
            )
            results["int8"] = report.as_dict() | {"onnx_bytes": len(int8)}
            parity.check(report, params.export.int8_min_label_agreement, max_proba_diff=1.0)
            _record_own_metrics(out_dir / "int8", int8_probs, labels)
    finally:
        reports_dir.mkdir(parents=True, exist_ok=True)
        (reports_dir / f"parity_{model.name}.json").write_text(
            json.dumps(results, indent=2) + "\n", encoding="utf-8"
        )
    _log_to_mlflow(params, run["run_id"], out_dir, results)
    for precision in results:
        save_to_store(out_dir / precision)
    return results


def _record_own_metrics(folder: Path, probs: np.ndarray, labels: list[str]) -> None:
    """A quantised variant reports its own test accuracy, not the fp32 model's it came from."""
    from training.evaluate import classification_metrics

    names, metadata = read_model_folder(folder)
    metrics = classification_metrics(labels, [names[i] for i in probs.argmax(axis=1)], names)
    own = {k: float(metrics[k]) for k in ("accuracy", "macro_f1")}
    write_metadata(folder, replace(metadata, metrics=own))


def _log_to_mlflow(params: Params, run_id: str, out_dir: Path, results: dict[str, dict[str, float]]) -> None:
    import mlflow

    from training import tracking

    with tracking.run(params.registry.experiment, run_name="export", run_id=run_id):
        for precision, report in results.items():
            mlflow.log_metrics({f"parity_{precision}_{k}": float(v) for k, v in report.items()})
        mlflow.log_artifacts(str(out_dir), "onnx")

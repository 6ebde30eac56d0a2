"""Export a trained family to ONNX model folders (fp32, and int8 where asked), proving parity.

fp32 must score like the source model (TF-IDF+LR: probabilities on the whole test split; PyTorch
families: logits on a test sample); int8 must agree with fp32 on the labels of the whole test split.
Any miss raises ParityError and stops the pipeline. Parity compares the graphs as exported; only then
is each variant calibrated (a temperature fitted on the family's validation split,
converters.calibration) and given its drift reference (the features of that split, converters.reference),
both from texts the model never trained on. What differs per family (conversion, fp32 parity, int8
options, a vocabulary) lives in converters.exporters; this module does what every family shares.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from converters import parity
from converters.abstention import Abstention, fit_threshold
from converters.calibration import Calibration, calibrate
from converters.exporters import Int8Options, exporter_for
from converters.reference import write_reference_profile, write_vocabulary
from converters.store import save_to_store
from textclf.core.contract import (
    MODEL_FILE,
    TOKENIZER_FILE,
    ModelMetadata,
    check_exported_folder,
    model_version,
    read_model_folder,
    version_of,
    write_metadata,
    write_model_folder,
)
from textclf.core.runtime import OnnxClassifier
from textclf.core.variants import Variant, variants_of
from training.data import load_texts_labels
from training.families.base import ModelFamily
from training.families.factory import load_family
from training.params import Params
from training.splits import Examples, validation_examples
from training.train import RUN_FILE
from training.validate import PREPARED_LABEL, PREPARED_TEXT


def _write_variant(
    out_dir: Path,
    variant: Variant,
    onnx_bytes: bytes,
    model: ModelFamily,
    base: ModelMetadata,
    vocabulary: list[str] | None,
) -> Path:
    """Write one variant's model folder, `out_dir/<precision>`, uncalibrated (temperature 1)."""
    folder = out_dir / variant.precision
    if folder.exists():
        shutil.rmtree(folder)
    version = model_version(onnx_bytes, lowercase=base.lowercase)
    write_model_folder(
        folder, onnx_bytes, model.labels, replace(base, precision=variant.precision, version=version)
    )
    if model.tokenizer is not None:
        model.tokenizer.save(str(folder / TOKENIZER_FILE))
    if vocabulary is not None:
        write_vocabulary(folder, vocabulary)
    return folder


def _calibrate_variant(folder: Path, validation: Examples, test: Examples) -> Calibration:
    """Fit the variant's temperature on the validation split's graph probabilities, measure it on
    both splits, and record it (with the version it implies) in the folder's metadata."""
    served = OnnxClassifier(folder)
    if served.temperature != 1.0:
        raise ValueError(f"{folder}: already calibrated (temperature {served.temperature})")
    index = {label: i for i, label in enumerate(served.labels)}
    calibration = calibrate(
        parity.chunked(served.predict_proba, validation.texts),
        np.array([index[label] for label in validation.labels]),
        parity.chunked(served.predict_proba, test.texts),
        np.array([index[label] for label in test.labels]),
    )
    _, metadata = read_model_folder(folder)
    calibrated = replace(metadata, temperature=calibration.temperature)
    write_metadata(
        folder, replace(calibrated, version=version_of((folder / MODEL_FILE).read_bytes(), calibrated))
    )
    return calibration


def _fit_abstention(folder: Path, validation: Examples, target_precision: float) -> Abstention:
    """Fit the variant's abstention threshold on the validation split's calibrated scores and record it
    (with the version it implies) in the folder's metadata."""
    served = OnnxClassifier(folder)
    probs = parity.chunked(served.predict_proba, validation.texts)
    index = {label: i for i, label in enumerate(served.labels)}
    targets = np.array([index[label] for label in validation.labels])
    abstention = fit_threshold(probs.max(axis=1), probs.argmax(axis=1) == targets, target_precision)
    _, metadata = read_model_folder(folder)
    fitted = replace(metadata, abstain_below=abstention.threshold)
    write_metadata(folder, replace(fitted, version=version_of((folder / MODEL_FILE).read_bytes(), fitted)))
    return abstention


def _quantize_int8(onnx_bytes: bytes, options: Int8Options) -> bytes:
    from converters.torch_onnx import quantize_int8

    op_types = list(options.op_types) if options.op_types is not None else None
    return quantize_int8(onnx_bytes, op_types=op_types, keep_float=options.keep_float)


def export(params: Params, model_dir: Path, out_dir: Path, reports_dir: Path) -> dict[str, dict[str, float]]:
    """Convert the model in `model_dir` into `out_dir/fp32` (and `out_dir/int8`); check parity;
    calibrate each variant and give it its drift reference (reports/calibration_<family>.json); save
    each variant to the BentoML model store. Returns the parity reports."""
    model = load_family(model_dir)
    exporter = exporter_for(model.name)
    fp32, *int8 = variants_of(model.name, quantized=model.name in params.export.quantize)
    run = json.loads((model_dir / RUN_FILE).read_text(encoding="utf-8"))
    data = json.loads((reports_dir / "data.json").read_text(encoding="utf-8"))
    base = ModelMetadata(
        family=model.name,
        version="",
        input_kind=model.input_kind,
        lowercase=model.lowercase_input,
        data_sha256=data["data_sha256"],
        metrics={k: run["metrics"][k] for k in ("accuracy", "macro_f1") if k in run["metrics"]},
        max_length=model.max_length,
        pad_id=model.pad_id,
        mlflow_run_id=run["run_id"],
        registered_version=run["registered_version"],
    )
    texts, labels = load_texts_labels(params.data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    validation = validation_examples(params, model.name)
    vocabulary = exporter.vocabulary(model)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    results: dict[str, dict[str, float]] = {}
    try:
        fp32_bytes = exporter.to_onnx(model, model_dir, params.export)
        fp32_served = OnnxClassifier(_write_variant(out_dir, fp32, fp32_bytes, model, base, vocabulary))
        report = exporter.fp32_parity(model, fp32_served, texts, params.export)
        results[fp32.precision] = report.as_dict() | {"onnx_bytes": len(fp32_bytes)}
        for variant in int8:  # the int8 variant, where params ask for one
            int8_bytes = _quantize_int8(fp32_bytes, exporter.int8)
            folder = _write_variant(out_dir, variant, int8_bytes, model, base, vocabulary)
            int8_probs = parity.chunked(OnnxClassifier(folder).predict_proba, texts)
            report = parity.compare(parity.chunked(fp32_served.predict_proba, texts), int8_probs)
            results[variant.precision] = report.as_dict() | {"onnx_bytes": len(int8_bytes)}
            parity.check(report, params.export.int8_min_label_agreement, max_proba_diff=1.0)
            _record_own_metrics(folder, int8_probs, labels)
    finally:
        reports_dir.mkdir(parents=True, exist_ok=True)
        (reports_dir / f"parity_{model.name}.json").write_text(
            json.dumps(results, indent=2) + "\n", encoding="utf-8"
        )
    calibrations = _calibrate_and_profile(out_dir, (fp32, *int8), validation, Examples(texts, labels))
    abstentions: dict[str, Abstention] = {}
    if params.abstain.target_precision is not None:
        for variant in (fp32, *int8):
            folder = out_dir / variant.precision
            abstentions[variant.precision] = _fit_abstention(
                folder, validation, params.abstain.target_precision
            )
    report = {
        p: c.as_dict() | ({"abstention": abstentions[p].as_dict()} if p in abstentions else {})
        for p, c in calibrations.items()
    }
    (reports_dir / f"calibration_{model.name}.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )
    _log_to_mlflow(params, run["run_id"], out_dir, results, calibrations)
    for variant in (fp32, *int8):
        save_to_store(out_dir / variant.precision)
    return results


def _calibrate_and_profile(
    out_dir: Path, variants: tuple[Variant, ...], validation: Examples, test: Examples
) -> dict[str, Calibration]:
    """Calibrate every variant, then profile its drift reference with the calibrated scores; check each
    folder is complete before it leaves the pipeline."""
    calibrations: dict[str, Calibration] = {}
    for variant in variants:
        folder = out_dir / variant.precision
        calibrations[variant.precision] = _calibrate_variant(folder, validation, test)
        write_reference_profile(folder, validation.texts)
        check_exported_folder(folder)
    return calibrations


def _record_own_metrics(folder: Path, probs: np.ndarray, labels: list[str]) -> None:
    """A quantised variant reports its own test accuracy, not the fp32 model's it came from."""
    from training.evaluate import classification_metrics

    names, metadata = read_model_folder(folder)
    metrics = classification_metrics(labels, [names[i] for i in probs.argmax(axis=1)], names)
    own = {k: float(metrics[k]) for k in ("accuracy", "macro_f1")}
    write_metadata(folder, replace(metadata, metrics=own))


def _log_to_mlflow(
    params: Params,
    run_id: str,
    out_dir: Path,
    results: dict[str, dict[str, float]],
    calibrations: dict[str, Calibration],
) -> None:
    import mlflow

    from training import tracking

    with tracking.run(params.registry.experiment, run_name="export", run_id=run_id):
        for precision, report in results.items():
            mlflow.log_metrics({f"parity_{precision}_{k}": float(v) for k, v in report.items()})
        for precision, calibration in calibrations.items():
            mlflow.log_metrics({f"calibration_{precision}_{k}": v for k, v in calibration.as_dict().items()})
        mlflow.log_artifacts(str(out_dir), "onnx")

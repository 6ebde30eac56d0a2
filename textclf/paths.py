"""Where the pipeline writes what (relative to the project root, as dvc.yaml names them)."""

from __future__ import annotations

from pathlib import Path

from textclf.core.variants import Variant

ARTIFACTS = Path("artifacts")
REPORTS = Path("reports")
EVALUATIONS = REPORTS / "eval"  # one metrics file per family, written by `textclf evaluate`


def model_dir(family: str) -> Path:
    """The trained model of a family (native format)."""
    return ARTIFACTS / "models" / family


def onnx_dir(family: str) -> Path:
    """The exported variants of a family: one contract folder per precision (fp32/, int8/)."""
    return ARTIFACTS / "onnx" / family


def variant_dir(variant: Variant) -> Path:
    """The model folder of a variant: <family>/<precision>/ under the family's export folder."""
    return onnx_dir(variant.family) / variant.precision


def bento_record(name: str) -> Path:
    """Which Bento and model tags were built for a variant name (or for `champion`)."""
    return ARTIFACTS / "bento" / f"{name}.json"

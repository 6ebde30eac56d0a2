"""Where the pipeline writes what (relative to the project root, as dvc.yaml names them)."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path("artifacts")
REPORTS = Path("reports")


def model_dir(family: str) -> Path:
    """The trained model of a family (native format)."""
    return ARTIFACTS / "models" / family


def onnx_dir(family: str) -> Path:
    """The exported model folder of a family (the ONNX contract)."""
    return ARTIFACTS / "onnx" / family


def bento_record(family: str) -> Path:
    """Which Bento and model tags the build stage produced."""
    return ARTIFACTS / "bento" / f"{family}.json"

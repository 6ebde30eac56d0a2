"""Typed view of params.yaml: the one place the pipeline reads its configuration from."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_PARAMS_FILE = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    name: str = "banking77"
    dir: Path = Path("data/raw/banking77")
    train_file: str = "train.csv"
    test_file: str = "test.csv"
    text_column: str = "text"
    label_column: str = "category"
    labels_file: str | None = None
    on_leakage: Literal["fail", "drop_from_train"] = "fail"
    prepared_dir: Path = Path("artifacts/data")

    @property
    def train_path(self) -> Path:
        return self.dir / self.train_file

    @property
    def test_path(self) -> Path:
        return self.dir / self.test_file

    @property
    def prepared_train(self) -> Path:
        return self.prepared_dir / "train.jsonl"

    @property
    def prepared_test(self) -> Path:
        return self.prepared_dir / "test.jsonl"

    @property
    def labels_path(self) -> Path | None:
        return self.dir / self.labels_file if self.labels_file else None


class LogregParams(_Section):
    ngram_max: int = Field(1, ge=1, le=3)
    min_df: int = Field(1, ge=1)
    sublinear_tf: bool = False
    C: float = Field(10.0, gt=0)
    max_iter: int = Field(2000, ge=10)
    seed: int = 42


class GateParams(_Section):
    min_accuracy: float = Field(0.0, ge=0, le=1)
    min_macro_f1: float = Field(0.0, ge=0, le=1)


class ExportParams(_Section):
    parity_min_label_agreement: float = Field(0.999, ge=0, le=1)
    parity_max_proba_diff: float = Field(1e-4, gt=0)


class RegistryParams(_Section):
    model_name: str = "banking77-intent"
    experiment: str = "banking77"


class ServeParams(_Section):
    model: str = "logreg"


class Params(_Section):
    families: list[str] = Field(default_factory=lambda: ["logreg"], min_length=1)
    data: DataParams = DataParams()
    logreg: LogregParams = LogregParams()
    gate: GateParams = GateParams()
    export: ExportParams = ExportParams()
    registry: RegistryParams = RegistryParams()
    serve: ServeParams = ServeParams()


class ParamsError(ValueError):
    """params.yaml is missing or does not match the schema."""


def load_params(path: Path | str = DEFAULT_PARAMS_FILE) -> Params:
    """Read and validate params.yaml; unknown keys and wrong types are errors, not surprises."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"parameters file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"invalid {path}:\n{exc}") from exc

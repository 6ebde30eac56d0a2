"""PyTorch families → ONNX: the LSTM with torch.onnx, BERT with optimum plus ORT graph optimisation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import torch
from torch import nn

from converters.onnx_graph import append_softmax, sort_opset_imports

INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("logits", "probabilities")


class _WithSoftmax(nn.Module):
    """Wraps a (input_ids, attention_mask) → logits module to output logits and probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_ids, attention_mask)
        return logits, torch.softmax(logits, dim=-1)


def lstm_to_onnx(model: nn.Module, opset: int = 17) -> bytes:
    """Export with dynamic batch and sequence axes; weights embedded (no side file)."""
    wrapper = _WithSoftmax(model).eval()
    example = (torch.ones((2, 5), dtype=torch.long), torch.ones((2, 5), dtype=torch.long))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS}
            | {name: {0: "batch"} for name in OUTPUTS},
            opset_version=opset,
            dynamo=False,
        )
        exported = onnx.load(str(path))
    return sort_opset_imports(exported).SerializeToString()


def bert_to_onnx(model_dir: Path, optimization_level: int = 2) -> bytes:
    """optimum's text-classification export, ORT graph optimisation, then softmax → probabilities."""
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    with tempfile.TemporaryDirectory() as tmp:
        exported, optimized = Path(tmp) / "exported", Path(tmp) / "optimized"
        main_export(str(model_dir), output=exported, task="text-classification", do_validation=False)
        optimizer = ORTOptimizer.from_pretrained(exported)
        config = OptimizationConfig(optimization_level=optimization_level, optimize_for_gpu=False)
        optimizer.optimize(save_dir=optimized, optimization_config=config)
        graph = onnx.load(str(next(optimized.glob("*.onnx"))))
    return sort_opset_imports(append_softmax(graph)).SerializeToString()


def quantize_int8(
    onnx_bytes: bytes, op_types: list[str] | None = None, keep_float: tuple[str, ...] = ()
) -> bytes:
    """Dynamic int8 quantisation: weights per output channel on 7 bits, activations on the fly.

    `op_types` limits which operators are quantised; nodes whose name contains one of `keep_float`
    stay in float. Measured on the fine-tuned MiniLM (banking77 test, int8 vs fp32 labels): quantising
    every operator per tensor agreed on 98.5%; per channel on 98.9%; MatMul only, per channel, 7-bit,
    with the pooler and classifier head in float on 99.1% (but the fused attention projections stayed
    float: 352 texts/s on one thread in the evaluate stage); MatMul and fused Attention per channel,
    head in float: 98.7-99.2% depending on how texts are batched (activation scales are per call);
    the same with the first layer's attention in float: 99.06% in the export gate, within 0.13 points
    of fp32 accuracy, 455 texts/s.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(onnx_bytes)
        model = onnx.load(str(source))
        excluded = [n.name for n in model.graph.node if any(part in n.name for part in keep_float)]
        # ORT-optimised graphs hold fused com.microsoft ops whose outputs shape inference cannot
        # type; they are float, as the option says.
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no saturation in the u8-by-s8 kernels of CPUs without VNNI
            op_types_to_quantize=op_types,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        return sort_opset_imports(onnx.load(str(target))).SerializeToString()

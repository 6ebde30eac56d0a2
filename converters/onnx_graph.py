"""Small ONNX graph edits shared by the converters."""

from __future__ import annotations

import onnx
from onnx import helper

from textclf.core.contract import PROBABILITIES_OUTPUT


def append_softmax(model: onnx.ModelProto, logits: str = "logits") -> onnx.ModelProto:
    """Add the contract's `probabilities` output (softmax over classes); `logits` stays for parity checks."""
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if logits not in outputs:
        raise ValueError(f"graph has no {logits!r} output: {list(outputs)}")
    graph.node.append(helper.make_node("Softmax", [logits], [PROBABILITIES_OUTPUT], axis=-1))
    shape = outputs[logits].type.tensor_type.shape
    probabilities = helper.make_tensor_value_info(PROBABILITIES_OUTPUT, onnx.TensorProto.FLOAT, None)
    probabilities.type.tensor_type.shape.CopyFrom(shape)
    graph.output.append(probabilities)
    return model


def sort_opset_imports(model: onnx.ModelProto) -> onnx.ModelProto:
    """Exporters list opset imports in set order; sorted, the same model always gives the same bytes."""
    imports = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(imports)
    return model

"""Conversion: trained models → ONNX model folders (the contract), parity checks, the model store."""

"""`textclf bench`: served throughput against the ONNX Runtime limit and simpler servers, in one run."""

"""Serving: the BentoML service and the ONNX Runtime inference path (serving dependencies only)."""

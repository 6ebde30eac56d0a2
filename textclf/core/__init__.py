"""The product's kernel: what the pipeline and the server share, and nothing of either.

The model-folder contract, the ONNX Runtime classifier, sealing at rest, the variant type, the
settings reader, the streaming record reader and the offline switch live here. The kernel imports
none of the rooms (bentos, auth, monitoring, training, converters, bench) and only serving-grade
libraries (numpy, onnxruntime, tokenizers, cryptography, pydantic), so it ships in the Bento.
"""

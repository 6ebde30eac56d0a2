"""The strongest batching peer: NVIDIA Triton's dynamic batcher (via PyTriton) in front of the same ORT code.

Triton's C++ HTTP front end takes one text per request (KServe v2 JSON), its dynamic batcher gathers up to
`--max-batch` of them for at most `--queue-delay-us`, and hands each batch to one of `--instances` Python
callables, each with its own `OnnxClassifier` (the product's runtime: tokenised together, sorted by length,
run in chunks of `--sub-batch`, one ORT thread by default). Against the Bento's own batching this asks:
would a purpose-built batching server in front of our inference code do better?

PyTriton needs NumPy < 2, so this runs in its own venv (bench/requirements-pytriton.txt, made by
bench/peers.py) with the repo root on PYTHONPATH: it imports only textclf.core, pytriton, numpy and the
standard library. Everything listens on 127.0.0.1 (HTTP on `--port`, gRPC and metrics on free ports);
SIGTERM stops Triton and removes its workspace.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sysconfig
from pathlib import Path
from types import FrameType

import numpy as np

from textclf.core.offline import go_offline
from textclf.core.runtime import OnnxClassifier

MODEL_NAME = "textclf"  # bench/peers.py TRITON_MODEL
HOST = "127.0.0.1"
PORTS_PREFIX = "pytriton_ort ports: "


def parse_args() -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", help="model folder (model.onnx, labels.json, metadata.json)")
    parser.add_argument("--port", type=int, required=True, help="HTTP port (gRPC and metrics get free ones)")
    parser.add_argument("--instances", type=int, default=cores, help="model instances (one classifier each)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per instance")
    parser.add_argument("--sub-batch", type=int, default=8, help="most texts per ORT call, after sorting")
    parser.add_argument("--max-batch", type=int, default=64, help="Triton's max batch size (texts)")
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batcher's max queue delay")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def infer_function(classifier: OnnxClassifier):
    """One instance's callable: a batch of requests (one text each) in, a label and score per text out."""
    from pytriton.decorators import batch

    @batch
    def infer(texts: np.ndarray) -> dict[str, np.ndarray]:
        batch_texts = [bytes(t).decode("utf-8") for t in texts.reshape(-1)]
        best = [row[0] for row in classifier.top_k(classifier.predict_proba(batch_texts), 1)]
        return {
            "label": np.array([[s.label.encode("utf-8")] for s in best], dtype=np.object_),
            "score": np.array([[s.score] for s in best], dtype=np.float32),
        }

    return infer


def use_this_libpython() -> None:
    """Make Triton's Python backend stub load this interpreter's libpython, not the system one.

    The stub is a C++ program that embeds Python via the dynamic loader (libpython3.X.so.1.0) but runs
    this venv's standard library; with a pyenv Python 3.11.7 and Debian's libpython 3.11.2 it failed in
    multiprocessing (`RLock` has no `_recursion_count`). Triton's environment inherits ours."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        paths = [libdir, *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
        os.environ["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(paths))


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # Triton.serve() catches it and stops the server, proxies and workspace


def main() -> None:
    args = parse_args()
    go_offline()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    use_this_libpython()

    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    classifiers = [
        OnnxClassifier(args.source, threads=args.threads, sub_batch=args.sub_batch)
        for _ in range(max(1, args.instances))
    ]
    ports = {"http": args.port, "grpc": free_port(), "metrics": free_port()}
    print(f"{PORTS_PREFIX}{json.dumps(ports)}", flush=True)  # for logs and tests (metrics: batch counts)
    config = TritonConfig(
        http_address=HOST,
        http_port=ports["http"],
        grpc_address=HOST,
        grpc_port=ports["grpc"],
        metrics_address=HOST,
        metrics_port=ports["metrics"],
        allow_sagemaker=False,
        allow_vertex_ai=False,
        allow_gpu_metrics=False,
        log_verbose=0,
    )
    model_config = ModelConfig(
        max_batch_size=args.max_batch,
        batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
    )
    try:
        with Triton(config=config) as triton:
            triton.bind(
                model_name=MODEL_NAME,
                infer_func=[infer_function(c) for c in classifiers],
                inputs=[Tensor(name="texts", dtype=bytes, shape=(1,))],
                outputs=[
                    Tensor(name="label", dtype=bytes, shape=(1,)),
                    Tensor(name="score", dtype=np.float32, shape=(1,)),
                ],
                config=model_config,
                strict=True,
            )
            triton.serve()  # returns on SIGTERM (as KeyboardInterrupt), after stopping Triton
    except KeyboardInterrupt:
        pass  # SIGTERM while starting: PyTriton's atexit hook stops Triton and removes its workspace


if __name__ == "__main__":
    main()

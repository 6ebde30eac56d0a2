"""Bundle: put a model folder in the BentoML store and build the Bento that serves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from converters.store import save_to_store

BENTOFILE = Path(__file__).resolve().parent.parent / "bentofile.yaml"  # the project's own


def build_bento(onnx_dir: Path, record: Path, bentofile: Path = BENTOFILE) -> dict[str, str]:
    """Store the model, build the Bento with TEXTCLF_MODEL pinned to it, record both tags."""
    model_tag = save_to_store(onnx_dir)
    # A child process: the service module reads TEXTCLF_MODEL at import, once.
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("bentoml")),
            "build",
            "-f",
            str(bentofile.resolve()),
            "--output",
            "tag",
            str(bentofile.resolve().parent),
        ],
        env={**os.environ, "TEXTCLF_MODEL": model_tag},
        # from the project's folder: BentoML refuses bentofile paths (requirements, the Dockerfile
        # template) outside the working directory
        cwd=bentofile.resolve().parent,
        capture_output=True,
        text=True,
        check=False,
    )
    tag_lines = [line for line in done.stdout.splitlines() if line.startswith("__tag__:")]
    if done.returncode != 0 or not tag_lines:
        raise RuntimeError(f"bentoml build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    result = {"bento": tag_lines[-1].removeprefix("__tag__:"), "model": model_tag}
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def ensure_bento(onnx_dir: Path, record: Path) -> dict[str, str]:
    """The recorded Bento if it serves this model folder and the local store still has it;
    otherwise build it again from the model folder. The model is (re)stored either way, so the
    store holds it sealed whenever a data key is configured."""
    if record.is_file():
        recorded = json.loads(record.read_text(encoding="utf-8"))
        try:
            if recorded["model"] == save_to_store(onnx_dir):
                bentoml.bentos.get(recorded["bento"])
                return recorded
        except (NotFound, KeyError):
            pass
    return build_bento(onnx_dir, record)

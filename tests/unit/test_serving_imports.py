"""The serving path stays lean: importing it must not pull in any training dependency."""

from __future__ import annotations

import json
import os
import subprocess
import sys

FORBIDDEN = (
    "torch",
    "transformers",
    "optimum",
    "sklearn",
    "mlflow",
    "dvc",
    "pandas",
    "training",
    "converters",
)


def test_service_and_batch_client_import_only_serving_dependencies(trained_logreg) -> None:
    from converters.store import save_to_store

    tag = save_to_store(trained_logreg.onnx_dir("logreg"))  # the service resolves its model at import
    script = (
        "import json, sys; import bentos.service, bentos.batch; "
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    env_run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TEXTCLF_MODEL": tag},
    )
    assert json.loads(env_run.stdout.strip().splitlines()[-1]) == []

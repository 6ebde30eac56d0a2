"""Print the tag of the Bento `make image` containerizes for a model (a variant or `champion`).

Always a Bento built now, from the current code and bentofile.yaml (its Docker options included: BentoML
copies the Dockerfile template into each Bento): a recorded Bento may predate a code change, and the
image must run what the tree holds. The model is stored first, sealed whenever a data key is configured.
Its tags are recorded apart from `textclf serve`'s and the pipeline's (artifacts/bento/image-<model>.json).
Run with the project's virtual environment: `python deploy/image/bento.py champion`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from converters.bundle import build_bento
from textclf import paths
from textclf.cli.common import variant


def main(model: str) -> str:
    chosen, folder = variant(model, Path("params.yaml"))  # paths are relative to the repository root
    tags = build_bento(folder, paths.bento_record(f"image-{model}"))
    print(f"{chosen}: Bento {tags['bento']}, model {tags['model']}", file=sys.stderr)
    return tags["bento"]


if __name__ == "__main__":
    try:
        print(main(sys.argv[1] if len(sys.argv) > 1 else "champion"))
    except click.exceptions.Exit as exc:  # textclf's own failure: its message is already printed
        sys.exit(exc.exit_code)
    except RuntimeError as exc:  # bentoml build failed: its output is in the message
        sys.exit(f"bento.py: {exc}")

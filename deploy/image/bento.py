"""Print the tag of the Bento `make image` containerizes for a model (a variant or `champion`).

The Bento `textclf serve` would serve (converters.bundle.ensure_bento: the recorded one while it still
serves the model folder, the model re-stored first, so the store holds it sealed whenever a data key is
configured), built again when it was made with other Docker options than bentofile.yaml's now (BentoML
copies the Dockerfile template into each Bento at build time, so an older Bento would containerize with
an older template). Run with the project's virtual environment: `python deploy/image/bento.py champion`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bentoml
import click
import yaml

from converters.bundle import BENTOFILE, build_bento, ensure_bento
from textclf import paths
from textclf.cli.common import variant


def docker_options_current(bento_tag: str, bentofile: Path = BENTOFILE) -> bool:
    """Whether the Bento was built with bentofile.yaml's current base image and Dockerfile template."""
    wanted = yaml.safe_load(bentofile.read_text(encoding="utf-8")).get("docker") or {}
    folder = Path(bentoml.bentos.get(bento_tag).path)
    dockerfile = folder / "env" / "docker" / "Dockerfile"
    if wanted.get("base_image") and f"FROM {wanted['base_image']} " not in dockerfile.read_text("utf-8"):
        return False
    if wanted.get("dockerfile_template"):
        ours = (bentofile.parent / wanted["dockerfile_template"]).read_bytes()
        copied = folder / "env" / "docker" / "Dockerfile.template"
        return copied.is_file() and copied.read_bytes() == ours
    return True


def main(model: str) -> str:
    chosen, folder = variant(model, Path("params.yaml"))  # paths are relative to the repository root
    record = paths.bento_record(model)
    tags = ensure_bento(folder, record)
    if not docker_options_current(tags["bento"]):
        print(f"{tags['bento']} has older Docker options: building the Bento again", file=sys.stderr)
        tags = build_bento(folder, record)
    print(f"{chosen}: Bento {tags['bento']}, model {tags['model']}", file=sys.stderr)
    return tags["bento"]


if __name__ == "__main__":
    try:
        print(main(sys.argv[1] if len(sys.argv) > 1 else "champion"))
    except click.exceptions.Exit as exc:  # textclf's own failure: its message is already printed
        sys.exit(exc.exit_code)
    except RuntimeError as exc:  # bentoml build failed: its output is in the message
        sys.exit(f"bento.py: {exc}")

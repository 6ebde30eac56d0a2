"""A real git + DVC project for the retraining loop's tests: the pipeline's code, a tiny dataset, TF-IDF + LR
only, its champion selected; and the CLI run inside it as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO
from tests.helpers import bin_path, write_tiny_dataset
from textclf.core.crypto import SealedLog, Sealer, decode_data_key, new_data_key
from textclf.core.feedback_log import FEEDBACK_AAD, log_name

# What a project needs of the repository: the pipeline and the code its stages depend on.
CODE = [
    "training",
    "converters",
    "bentos",
    "auth",
    "monitoring",
    "textclf",
    "bentofile.yaml",
    "deploy",  # the bentofile's Dockerfile template
    "requirements-serving.txt",
    "dvc.yaml",
    "data/feedback",  # the labelled-feedback folder the validate stage reads (only its README at first)
]


def project_env(project: Path, key: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(bin_path('dvc')).parent}:{os.environ['PATH']}",
        "TEXTCLF_DATA_KEY": key,
        "TEXTCLF_AUDIT_DIR": str(project / "audit"),
        "TEXTCLF_SERVED_MODEL_FILE": str(project / "served-model.json"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


class Project:
    def __init__(self, root: Path, key: str, model: str):
        self.root = root
        self.key = key
        self.model = model  # MLflow registered model and experiment
        self.logs = root / "server-feedback"
        self.env = project_env(root, key)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def textclf(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(bin_path("textclf"), *args)

    def set_params(self, section: str, **values: object) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params[section].update(values)
        path.write_text(yaml.safe_dump(params))

    def post_feedback(self, worker: str, rows: list[tuple[str, str]], start: float = 0.0) -> None:
        """Append records to a worker's log exactly as the server's feedback store does."""
        with SealedLog(self.logs / log_name(worker), Sealer(decode_data_key(self.key)), FEEDBACK_AAD) as log:
            for i, (text, label) in enumerate(rows):
                log.append(
                    {"time": start + i, "subject": "t", "text": text, "label": label, "predicted": None}
                )

    def alias(self, name: str):
        return MlflowClient().get_model_version_by_alias(self.model, name)

    def version(self, alias: str) -> str:
        return str(self.alias(alias).version)

    def served(self) -> dict:
        """What following servers are told to serve (textclf.core.served_model)."""
        return json.loads((self.root / "served-model.json").read_text())

    def state(self) -> dict:
        return json.loads(self.textclf("retrain", "--status").stdout)


def make_project(root: Path, model: str, logreg_c: float, **params_changes: dict) -> Project:
    """The project in `root`, its pipeline reproduced up to the champion (`dvc repro select`).

    Its export seals models into the session's shared BentoML store with the project's own data key, so
    each project trains with its own `logreg_c`: the same bytes as another test's model would be the same
    store entry, re-sealed under a key that test does not have."""
    for name in CODE:
        source, target = REPO / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl*"))
        else:
            shutil.copy2(source, target)
    write_tiny_dataset(root / "data" / "raw" / "tiny")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["dir"] = "data/raw/tiny"
    params["families"] = ["logreg"]
    params["registry"].update(experiment=model, model_name=model)
    params["logreg"]["C"] = logreg_c
    for section, values in params_changes.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    project = Project(root, new_data_key(), model)
    for argv in (["git", "init", "-q"], [bin_path("dvc"), "init", "-q"], ["git", "add", "-A"]):
        assert project.run(*argv).returncode == 0
    assert project.run("git", "commit", "-qm", "project").returncode == 0
    first = project.run(bin_path("dvc"), "repro", "select")
    assert first.returncode == 0, first.stdout + first.stderr
    return project

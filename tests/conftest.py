"""Shared fixtures. Every test runs offline, with its own BentoML home and MLflow store."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from textclf.core.offline import go_offline

go_offline()
# Before anything imports bentoml or mlflow: keep the user's stores out of the tests.
_STATE = Path(tempfile.mkdtemp(prefix="textclf-tests-"))
os.environ["BENTOML_HOME"] = str(_STATE / "bentoml")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STATE / 'mlflow.db'}"
# ...and the user's keys, audit trail, feedback and data key (HOME/data.key) out of them too.
for _name in [n for n in os.environ if n.startswith("TEXTCLF_")]:
    del os.environ[_name]
os.environ["TEXTCLF_HOME"] = str(_STATE / "home")

from tests.auth_helpers import AuthFolder, make_auth_folder  # noqa: E402
from tests.helpers import bentoml_serve, make_tiny_bert, write_tiny_dataset  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SECURITY_OFF = {"TEXTCLF_AUTH": "false", "TEXTCLF_AUDIT": "false"}  # for tests about serving only
SERVER_LIMITS = {
    "TEXTCLF_MAX_TEXTS": "16",
    "TEXTCLF_MAX_TEXT_CHARS": "200",
    "TEXTCLF_MAX_BODY_BYTES": "65536",
}


@dataclass(frozen=True)
class Workspace:
    root: Path
    params_file: Path

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def model_dir(self, family: str) -> Path:
        return self.root / "artifacts" / "models" / family

    def onnx_dir(self, family: str, precision: str = "fp32") -> Path:
        """A variant's model folder (the export writes <family>/<precision>/)."""
        return self.root / "artifacts" / "onnx" / family / precision

    def export_dir(self, family: str) -> Path:
        return self.root / "artifacts" / "onnx" / family


def make_workspace(root: Path, **overrides: dict) -> Workspace:
    """A params.yaml over the tiny dataset, everything written under `root`."""
    data_dir = write_tiny_dataset(root / "data")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(dir=str(data_dir), prepared_dir=str(root / "artifacts" / "data"))
    params["registry"].update(experiment=f"tests-{root.name}", model_name=f"tests-{root.name}")
    for section, values in overrides.items():
        params[section].update(values)
    params["families"] = sorted({"logreg", *(k for k in overrides if k in ("lstm", "bert"))})
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    return Workspace(root=root, params_file=params_file)


# Tiny but real: small enough to train in seconds, trained enough to learn the five intents.
TINY_LSTM = {"vocab_size": 200, "embed_dim": 16, "hidden_size": 16, "epochs": 6, "batch_size": 16, "lr": 0.01}
TINY_BERT = {
    "epochs": 60,
    "batch_size": 16,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "max_length": 32,
    "patience": 60,
}
TINY_EXPORT = {"parity_sample": 64, "int8_min_label_agreement": 0.9}


def run_pipeline(root: Path, family: str, **overrides: dict) -> Workspace:
    """validate → train → export of one family on the tiny dataset."""
    from converters.export import export
    from training.params import load_params
    from training.train import train
    from training.validate import prepare

    ws = make_workspace(root, export=TINY_EXPORT, **overrides)
    params = load_params(ws.params_file)
    prepare(params.data, ws.reports / "data.json")
    train(family, params, ws.model_dir(family), ws.reports)
    export(params, ws.model_dir(family), ws.export_dir(family), ws.reports)
    return ws


@pytest.fixture(scope="session")
def trained_logreg(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return run_pipeline(tmp_path_factory.mktemp("pipeline"), "logreg")


@pytest.fixture(scope="session")
def trained_lstm(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return run_pipeline(tmp_path_factory.mktemp("lstm"), "lstm", lstm=TINY_LSTM)


@pytest.fixture(scope="session")
def trained_bert(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from tests.helpers import tiny_rows

    root = tmp_path_factory.mktemp("bert")
    checkpoint = make_tiny_bert(root / "checkpoint", [text for text, _ in tiny_rows(40, seed=1)])
    return run_pipeline(root, "bert", bert={**TINY_BERT, "checkpoint": str(checkpoint)})


@pytest.fixture(scope="session")
def built_bento(trained_logreg: Workspace) -> dict[str, str]:
    """The real Bento built from the repo's bentofile around the tiny model."""
    from converters.bundle import build_bento

    return build_bento(
        trained_logreg.onnx_dir("logreg"),
        trained_logreg.root / "artifacts" / "bento.json",
        bentofile=REPO / "bentofile.yaml",
    )


@pytest.fixture(scope="session")
def second_logreg(built_bento: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Another version of the built Bento's model (same labels, other settings), saved in the store: a
    challenger, or a champion to switch to."""
    from converters.store import save_to_store

    ws = run_pipeline(tmp_path_factory.mktemp("second"), "logreg", logreg={"C": 0.3})
    tag = save_to_store(ws.onnx_dir("logreg"))
    assert tag != built_bento["model"]
    return tag


@pytest.fixture(scope="session")
def server(built_bento: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `bentoml serve` of the built Bento on a free loopback port (small limits), with the
    security layer off: these tests are about serving (tests/integration/test_security*.py use
    `secure_server`)."""
    env = {"TEXTCLF_MODEL": built_bento["model"], **SECURITY_OFF, **SERVER_LIMITS}
    with bentoml_serve(built_bento["bento"], env, cwd=tmp_path_factory.mktemp("serve")) as url:
        yield url


@dataclass(frozen=True)
class SecureServer:
    url: str
    auth: AuthFolder
    audit_dir: Path
    feedback_dir: Path
    data_key: str


@pytest.fixture(scope="session")
def secure_server(
    built_bento: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureServer]:
    """The built Bento as it runs by default: tokens required, audit on, feedback encrypted."""
    from textclf.core.crypto import new_data_key

    root = tmp_path_factory.mktemp("secure")
    auth = make_auth_folder(root / "auth")
    data_key = new_data_key()
    env = {
        "TEXTCLF_MODEL": built_bento["model"],
        "TEXTCLF_AUTH_DIR": str(auth.path),
        "TEXTCLF_AUDIT_DIR": str(root / "audit"),
        "TEXTCLF_FEEDBACK_DIR": str(root / "feedback"),
        "TEXTCLF_DATA_KEY": data_key,
        "TEXTCLF_RATE_LIMIT_RPS": "5000",
        "TEXTCLF_RATE_LIMIT_BURST": "5000",
        **SERVER_LIMITS,
    }
    with bentoml_serve(built_bento["bento"], env, cwd=root) as url:
        yield SecureServer(url, auth, root / "audit", root / "feedback", data_key)

"""The container image `make image` builds, run on loopback the way a cluster runs it: the signing keys,
the data key and the TLS pair mounted read-only from files made with the project's own commands, nothing
secret in the image. Skipped unless RUN_IMAGE_TESTS=1 (`make test-image` builds the image, then sets it):
a build takes minutes and needs podman.

Checked: only serving dependencies inside, a non-root user, a HEALTHCHECK, the size budget, no key material
in any layer or in the image config, a sealed model; /classify over HTTPS and over HTTP, /metrics,
/readyz, 401 without a token; SIGTERM while requests are in flight (every one answered, a clean exit
within the grace period); and a server that refuses to start, at once and saying why, without a key ring,
with a wrong data key or with a bad TEXTCLF_* value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from auth.tls import https_env, server_tls_args
from bench.processes import free_port
from tests.helpers import bin_path, wait_for
from textclf.core.crypto import decode_data_key
from textclf.core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("TEXTCLF_IMAGE", "localhost/textclf:latest")
IMAGE_USER, IMAGE_UID = "bentoml", 1034  # BentoML's Dockerfile makes this user
MAX_IMAGE_BYTES = 1_000_000_000
GRACE_S = 30  # `podman stop -t`: SIGTERM, then SIGKILL after this long (Kubernetes' default grace period)
START_TIMEOUT_S = 120
SECRETS = "/run/secrets/textclf"  # where the container sees the mounted files
TRAINING_ONLY = {"torch", "transformers", "scikit-learn", "mlflow", "mlflow-skinny", "dvc", "optimum", "onnx"}
SERVING = {"bentoml", "onnxruntime", "tokenizers", "numpy", "pyjwt", "cryptography", "whylogs"}
TEXTS = ["I still have not received my new card", "how do I get a refund?", "my pin is blocked"]
EXPECTED = ["card_arrival", "request_refund", "pin_blocked"]
PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=]{40}")
# Third-party files that carry published test keys, the same in every install (anything else is flagged):
PUBLIC_TEST_KEYS = (
    re.compile(r"usr/lib/x86_64-linux-gnu/libgnutls\.so\.[0-9.]+$"),  # GnuTLS's built-in self-test keys
    re.compile(
        r"site-packages/tornado/test/test\.key$"
    ),  # Tornado's test-suite key (a dependency of kantoku)
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("RUN_IMAGE_TESTS") != "1",
        reason="container image tests: `make test-image` (builds the image, sets RUN_IMAGE_TESTS=1)",
    ),
]


def podman(*args: str, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout_s, check=False, env=PODMAN_ENV
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} … failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    return done


# runc with raised limits (crun fails here); an explicit CONTAINERS_CONF wins.
PODMAN_ENV = {"CONTAINERS_CONF": str(REPO / "deploy" / "image" / "containers.conf"), **os.environ}


def host_settings() -> Settings:
    """The settings of the shell that ran `make test-image` (whose data key sealed the image's model):
    conftest drops every TEXTCLF_* variable, so the Makefile passes them as IMAGE_HOST_TEXTCLF_*."""
    prefix = "IMAGE_HOST_"
    return load_settings(
        {k.removeprefix(prefix): v for k, v in os.environ.items() if k.startswith(prefix) and v}
    )


def host_data_key_text(settings: Settings) -> str | None:
    if settings.data_key is not None:
        return settings.data_key.get_secret_value().strip()
    path = settings.data_key_path
    return path.read_text(encoding="ascii").strip() if path else None


def textclf(*args: str, home: Path) -> str:
    """A `textclf` command (the one an operator runs), its own TEXTCLF_HOME so nothing lands in ours."""
    env = {**os.environ, "TEXTCLF_HOME": str(home)}
    done = subprocess.run([bin_path("textclf"), *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def give_to_image_user(path: Path) -> None:
    """The server runs as uid 1034 and the key files are 0600: hand the copies to that uid (a cluster
    does the same with a secret's fsGroup/defaultMode). Rootless podman maps it through its namespace."""
    if os.geteuid() == 0:
        for item in [path, *path.rglob("*")]:
            os.chown(item, IMAGE_UID, IMAGE_UID)
    else:
        podman("unshare", "chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(path))


@dataclass(frozen=True)
class Secrets:
    """Files made for the container in a temp dir: key ring, data keys, TLS pair, and a token."""

    root: Path
    token: str
    data_key: str

    @property
    def cert(self) -> Path:
        return self.root / "tls" / "cert.pem"

    def mounts(self, data_key: str = "data.key", ring: bool = True, tls: bool = False) -> list[str]:
        args = ["-v", f"{self.root / 'keys' / data_key}:{SECRETS}/data.key:ro"]
        args += ["-e", f"TEXTCLF_DATA_KEY_FILE={SECRETS}/data.key"]
        if ring:
            args += [
                "-v",
                f"{self.root / 'auth'}:{SECRETS}/auth:ro",
                "-e",
                f"TEXTCLF_AUTH_DIR={SECRETS}/auth",
            ]
        if tls:
            args += ["-v", f"{self.root / 'tls'}:{SECRETS}/tls:ro"]
        return args

    def tls_args(self) -> list[str]:
        """`serve` flags for HTTPS, exactly as `textclf serve` builds them, with the container's paths."""
        host_args = server_tls_args(self.cert, self.root / "tls" / "key.pem")
        return [a.replace(str((self.root / "tls").resolve()), f"{SECRETS}/tls") for a in host_args]


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("no podman: `make image-tools`")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"no image {IMAGE}: `make image` builds it")
    return IMAGE


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secrets]:
    root = tmp_path_factory.mktemp("image-secrets")
    home = root / "home"  # the commands' own audit trail and defaults, not the user's
    textclf("auth", "init", "--auth-dir", str(root / "auth"), home=home)
    token = textclf(
        "token", "--auth-dir", str(root / "auth"), "--sub", "image-test", "--scope", "classify", home=home
    )
    textclf("tls-cert", "--out", str(root / "tls"), "--host", "127.0.0.1", home=home)
    (root / "keys").mkdir()
    textclf("auth", "data-key", "--output", str(root / "keys" / "wrong.key"), home=home)
    key = host_data_key_text(host_settings())
    if key is None:
        pytest.fail(
            "no data key on this machine: `make image` (through `make auth`) seals the model with one"
        )
    (root / "keys" / "data.key").write_text(key + "\n", encoding="ascii")
    for folder in ("auth", "tls", "keys"):
        give_to_image_user(root / folder)
    yield Secrets(root, token, key)
    if os.geteuid() != 0:  # files now owned by the namespace's uid: remove them from inside it
        podman("unshare", "rm", "-rf", str(root), check=False)


class Containers:
    """Containers this module starts (unique names), removed at the end whatever happened."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def name(self, what: str) -> str:
        self.names.append(f"textclf-test-{what}-{os.getpid()}-{len(self.names)}")
        return self.names[-1]

    def remove_all(self) -> None:
        for name in self.names:
            podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture(scope="module")
def containers() -> Iterator[Containers]:
    started = Containers()
    yield started
    started.remove_all()


@dataclass
class Server:
    name: str
    url: str
    verify: str | bool
    cold_start_s: float

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", verify=self.verify, timeout=30, **kw)

    def classify(self, token: str | None, texts: list[str], timeout_s: float = 60) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.post(
            f"{self.url}/classify",
            json={"texts": texts},
            headers=headers,
            verify=self.verify,
            timeout=timeout_s,
        )


def start(
    containers: Containers, image: str, secrets: Secrets, tls: bool, what: str, extra: tuple[str, ...] = ()
) -> Server:
    """`podman run -d` on a free loopback port; returns once /readyz answers 200 (the cold start)."""
    port, name = free_port(), containers.name(what)
    env = [f"{k}={v}" for k, v in https_env({}).items()] if tls else []
    t0 = time.monotonic()
    podman(
        "run", "-d", "--name", name, "--network", "host", *extra,
        *secrets.mounts(tls=tls), *[a for kv in env for a in ("-e", kv)],
        image, "serve", "--host", "127.0.0.1", "--port", str(port), *(secrets.tls_args() if tls else []),
    )  # fmt: skip
    server = Server(
        name, f"{'https' if tls else 'http'}://127.0.0.1:{port}", str(secrets.cert) if tls else False, 0
    )

    def ready() -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true":
            raise AssertionError(f"the container exited before it was ready:\n{logs(name)[-3000:]}")
        try:
            return server.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, START_TIMEOUT_S, f"{name} to answer /readyz", interval_s=0.1)
    server.cold_start_s = time.monotonic() - t0
    return server


def logs(name: str) -> str:
    done = podman("logs", name, check=False)
    return done.stdout + done.stderr


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a measured figure on the terminal even without -s (the README quotes them)."""

    def write(line: str) -> None:
        with capsys.disabled():
            print(f"\n[image] {line}")

    return write


# -- what is in the image ---------------------------------------------------------------------------


def test_image_holds_only_serving_dependencies(image: str) -> None:
    """What `pip list` would list (the venv has no pip: uv installed it), read the same way pip does."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))"
    )
    done = podman(
        "run", "--rm", "--no-healthcheck", "--network", "none", "--entrypoint", "python", image, "-c", code
    )
    names = {n.lower().replace("_", "-") for n in json.loads(done.stdout)}
    assert names >= SERVING, f"missing serving packages: {SERVING - names}"
    assert not names & TRAINING_ONLY, f"training-only packages in the image: {names & TRAINING_ONLY}"


def test_image_runs_as_a_non_root_user_with_a_healthcheck(image: str) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]
    assert config["Config"]["User"] == IMAGE_USER
    assert config["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/textclf-healthcheck"]
    done = podman("run", "--rm", "--no-healthcheck", "--network", "none", "--entrypoint", "id", image)
    assert done.stdout.startswith(f"uid={IMAGE_UID}({IMAGE_USER})"), done.stdout


def test_image_fits_its_size_budget(image: str, report: Callable[[str], None]) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    report(f"{image}: {size / 1e6:.0f} MB")
    # what dominates it: the largest installed packages (du inside the image, in MB)
    du = podman(
        "run", "--rm", "--entrypoint", "sh", image, "-c", "du -sm /app/.venv/lib/python3*/site-packages/*"
    )
    largest = sorted((line.split("\t") for line in du.stdout.splitlines()), key=lambda r: -int(r[0]))[:8]
    report("largest packages: " + ", ".join(f"{Path(path).name} {mb} MB" for mb, path in largest))
    assert size <= MAX_IMAGE_BYTES


def host_key_needles(settings: Settings) -> dict[str, bytes]:
    """What must never be in the image: the host's signing key ids, a line of each private key or HS256
    secret, and the data key (its text and its bytes)."""
    needles: dict[str, bytes] = {}
    auth_dir = settings.path("auth_dir")
    for item in sorted(auth_dir.glob("*.pem")) + sorted(auth_dir.glob("*.secret")):
        needles[f"key id {item.stem}"] = item.stem.encode()
        body = [
            ln for ln in item.read_text(encoding="ascii").splitlines() if ln and not ln.startswith("-----")
        ]
        needles[f"a line of {item.name}"] = body[len(body) // 2].encode()
    key = host_data_key_text(settings)
    if key is not None:
        needles["the data key (text)"] = key.encode()
        needles["the data key (bytes)"] = decode_data_key(key)
    return needles


def test_no_key_material_in_any_layer_and_the_model_is_sealed(image: str, tmp_path: Path) -> None:
    """`podman save`, then every file of every layer: no private key, no host key id or secret, no data
    key; the image config (env, labels, history) neither. The model's files are all sealed."""
    needles = host_key_needles(host_settings())
    assert any(name.startswith("the data key") for name in needles), "no host data key to look for"
    config = podman("image", "inspect", image).stdout.encode()
    assert not [n for n, v in needles.items() if v in config], "key material in the image config"
    archive = tmp_path / "image.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), image, timeout_s=600)
    found: list[str] = []
    model_files: list[str] = []
    with tarfile.open(archive) as outer:
        layers = json.loads(outer.extractfile("manifest.json").read())[0]["Layers"]  # type: ignore[union-attr]
        for layer in layers:
            with tarfile.open(fileobj=outer.extractfile(layer), mode="r|*") as inner:
                for member in inner:
                    if "/bento/models/" in f"/{member.name}" and member.isfile():
                        model_files.append(member.name)
                    if not member.isfile() or member.size == 0:
                        continue
                    data = inner.extractfile(member).read()  # type: ignore[union-attr]
                    known = any(pattern.search(member.name) for pattern in PUBLIC_TEST_KEYS)
                    if PEM_PRIVATE_KEY.search(data) and not known:
                        found.append(f"a PEM private key in {member.name}")
                    found += [
                        f"{what} in {member.name}" for what, needle in needles.items() if needle in data
                    ]
    archive.unlink()
    assert not found, found
    artifacts = [f for f in model_files if Path(f).name not in {"model.yaml", "latest"}]  # BentoML's own
    assert any(f.endswith("model.onnx.sealed") for f in artifacts), model_files
    assert all(f.endswith(".sealed") for f in artifacts), f"plain model files in the image: {artifacts}"


# -- serving -------------------------------------------------------------------------------------------


def test_serves_https_with_auth_metrics_and_health(
    image: str, secrets: Secrets, containers: Containers, report: Callable[[str], None]
) -> None:
    server = start(containers, image, secrets, tls=True, what="https")
    report(f"cold start (podman run → /readyz 200), HTTPS: {server.cold_start_s:.1f} s")
    answer = server.classify(secrets.token, TEXTS)
    assert answer.status_code == 200, answer.text
    labels = [r["label"] for r in answer.json()]
    assert sum(a == b for a, b in zip(labels, EXPECTED, strict=True)) >= 2, labels  # any variant gets these
    refused = server.classify(None, TEXTS)
    assert refused.status_code == 401 and "bearer" in refused.headers["www-authenticate"].lower()
    assert server.get("/readyz").status_code == 200
    metrics = server.get("/metrics")
    assert metrics.status_code == 200
    assert 'textclf_http_requests_total{route="/classify",status="200"}' in metrics.text
    assert 'textclf_http_requests_total{route="/classify",status="401"}' in metrics.text
    with pytest.raises(httpx.HTTPError):  # HTTPS only: plain HTTP on the same port gets nothing
        httpx.get(server.url.replace("https://", "http://") + "/readyz", timeout=5)
    check = podman("healthcheck", "run", server.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def raw_classify(
    url: str, token: str, texts: list[str], sent: threading.Event, go: threading.Event | None = None
) -> int:
    """POST /classify over a plain socket; `sent` is set once the request is on the wire. With `go`, the
    body arrives in two parts: the headers and a first byte now, the rest once `go` is set: between the
    two the request is in flight on the server whatever the model's speed, so SIGTERM in that window
    tests the drain itself. Returns the status (0 when no answer came, -1 for a 200 cut short)."""
    body = json.dumps({"texts": texts}).encode()
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /classify HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=GRACE_S + 30) as sock:
        first = 1 if go is not None else len(body)
        sock.sendall(head.encode() + body[:first])
        sent.set()
        if go is not None:
            go.wait(GRACE_S + 30)
            sock.sendall(body[first:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    if not status_line:
        return 0
    status = int(status_line.split()[1])
    try:
        complete = len(json.loads(rest.partition(b"\r\n\r\n")[2])) == len(texts)
    except ValueError:
        complete = False
    return -1 if status == 200 and not complete else status  # -1: a 200 cut short


def container_status(name: str) -> str:
    return podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()


def test_sigterm_answers_requests_in_flight_then_exits_cleanly(
    image: str, secrets: Secrets, containers: Containers, report: Callable[[str], None]
) -> None:
    """Plain HTTP this time. `podman stop` (SIGTERM) while requests are in flight: large batches being
    classified, and requests whose body is still arriving (in flight on the server for as long as the
    test wants, whichever model the image serves). Every one gets its full answer, and the container
    exits by itself, after the last of them and within the grace period."""
    server = start(containers, image, secrets, tls=False, what="http")
    report(f"cold start (podman run → /readyz 200), HTTP: {server.cold_start_s:.1f} s")
    assert server.classify(secrets.token, TEXTS).status_code == 200
    assert server.get("/metrics").status_code == 200 and server.get("/readyz").status_code == 200
    assert server.classify(None, TEXTS).status_code == 401
    check = podman("healthcheck", "run", server.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    batch = [f"{TEXTS[i % 3]} (request {i})" for i in range(256)]
    statuses: list[int] = []
    slow_statuses: list[int] = []
    go = threading.Event()

    def send(sent: threading.Event) -> None:
        statuses.append(raw_classify(server.url, secrets.token, batch, sent))

    def send_slowly(sent: threading.Event) -> None:
        slow_statuses.append(raw_classify(server.url, secrets.token, TEXTS, sent, go))

    batches_sent = [threading.Event() for _ in range(16)]
    slow_sent = [threading.Event() for _ in range(4)]
    senders = [threading.Thread(target=send, args=(event,)) for event in batches_sent]
    senders += [threading.Thread(target=send_slowly, args=(event,)) for event in slow_sent]
    for sender in senders:
        sender.start()
    for event in batches_sent + slow_sent:  # every request on the wire before the stop
        assert event.wait(30), "a request could not even be started"
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}
    stopping = threading.Thread(
        target=lambda: outcome.setdefault(
            "stop", podman("stop", "-t", str(GRACE_S), server.name, check=False)
        )
    )
    stop_at = time.monotonic()
    stopping.start()
    # podman marks the container `stopping` as it sends SIGTERM: only then may the half-sent bodies go on
    wait_for(lambda: container_status(server.name) == "stopping", GRACE_S, "podman stop to send SIGTERM")
    released_s = time.monotonic() - stop_at
    go.set()
    stopping.join(GRACE_S + 30)
    stop_s = time.monotonic() - stop_at
    for sender in senders:
        sender.join(GRACE_S + 30)
    state = json.loads(podman("inspect", server.name).stdout)[0]["State"]
    report(
        f"SIGTERM with {len(batches_sent)} batches of {len(batch)} texts and {len(slow_sent)} half-sent "
        f"requests in flight: stopped after {stop_s:.1f} s (the last body was sent at {released_s:.1f} s)"
    )
    assert outcome["stop"].returncode == 0, outcome["stop"].stderr
    assert statuses == [200] * len(batches_sent), (statuses, logs(server.name)[-3000:])
    assert slow_statuses == [200] * len(slow_sent), (slow_statuses, logs(server.name)[-3000:])
    assert released_s <= stop_s < GRACE_S, "the server did not wait for its requests, or had to be killed"
    assert state["ExitCode"] in (0, 143), (state, logs(server.name)[-3000:])  # 143: 128 + SIGTERM


def test_runs_with_a_read_only_root_filesystem(image: str, secrets: Secrets, containers: Containers) -> None:
    """As a cluster may run it (readOnlyRootFilesystem): podman's --read-only leaves tmpfs on /tmp, and
    BentoML's home and ours (audit, profiles) are pointed there; everything else is only read."""
    writable = ("-e", "BENTOML_HOME=/tmp/bentoml", "-e", "TEXTCLF_HOME=/tmp/textclf")
    server = start(containers, image, secrets, tls=False, what="read-only", extra=("--read-only", *writable))
    assert server.classify(secrets.token, TEXTS).status_code == 200
    podman("stop", "-t", str(GRACE_S), server.name)


# -- refusing to start ---------------------------------------------------------------------------------


def refused(image: str, secrets: Secrets, args: list[str]) -> tuple[str, float]:
    """Run in the foreground (as a cluster's first start would); it must end by itself, non-zero."""
    port = free_port()
    t0 = time.monotonic()
    done = podman(
        "run", "--rm", "--no-healthcheck", "--network", "host", *args,
        image, "serve", "--host", "127.0.0.1", "--port", str(port), timeout_s=60, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "Service textclf initialized" not in output, "a worker started"
    return output, time.monotonic() - t0


CASES = {
    "no key ring": (dict(ring=False), "textclf: cannot start: no signing keys in"),
    "wrong data key": (dict(data_key="wrong.key"), "textclf: cannot start: "),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refuses_to_start_with_one_clear_line(
    image: str, secrets: Secrets, case: str, report: Callable[[str], None]
) -> None:
    mounts, expected = CASES[case]
    output, took = refused(image, secrets, secrets.mounts(**mounts))  # type: ignore[arg-type]
    last = output.strip().splitlines()[-1]
    report(f"{case}: exited after {took:.1f} s: {last}")
    assert last.startswith(expected), output[-3000:]
    if case == "wrong data key":
        assert "wrong key" in last, last
    assert "Traceback" not in output, output[-3000:]
    assert took < 30


def test_refuses_to_start_on_a_bad_setting(
    image: str, secrets: Secrets, report: Callable[[str], None]
) -> None:
    output, took = refused(image, secrets, [*secrets.mounts(), "-e", "TEXTCLF_MAX_BATCH_SIZE=zero"])
    last = output.strip().splitlines()[-1]
    report(f"TEXTCLF_MAX_BATCH_SIZE=zero: exited after {took:.1f} s: {last}")
    assert last.endswith("TEXTCLF_MAX_BATCH_SIZE must be an integer, got 'zero'"), output[-3000:]
    assert took < 30


def test_a_bad_setting_is_one_line_without_a_traceback(image: str, secrets: Secrets) -> None:
    output, _ = refused(image, secrets, [*secrets.mounts(), "-e", "TEXTCLF_MAX_BATCH_SIZE=zero"])
    assert "Traceback" not in output

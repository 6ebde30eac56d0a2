"""The PyTriton peer's plumbing: request bodies, the venv's cache key, and a failed venv reported, not raised.

No server, no network, no real install: the interpreter that would create the venv is a stand-in script.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bench import peers
from bench.load import LoadError

TEXTS = ["where is my card", "refund please", 'quote " and ünïcode €', "x"]


def test_bodies_are_kserve_v2_requests_with_one_text_each(tmp_path: Path) -> None:
    path = peers.write_triton_bodies(TEXTS, tmp_path / "bodies.jsonl", count=50, seed=1)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 50
    seen = set()
    for line in lines:
        body = json.loads(line)
        assert set(body) == {"inputs"} and len(body["inputs"]) == 1
        tensor = body["inputs"][0]
        assert tensor == {"name": "texts", "shape": [1, 1], "datatype": "BYTES", "data": tensor["data"]}
        assert len(tensor["data"]) == 1 and tensor["data"][0] in TEXTS
        seen.add(tensor["data"][0])
    assert len(seen) > 1  # random choices, not one text repeated


def test_bodies_are_reproducible_and_cannot_be_empty(tmp_path: Path) -> None:
    a = peers.write_triton_bodies(TEXTS, tmp_path / "a.jsonl", count=20, seed=7).read_text()
    b = peers.write_triton_bodies(TEXTS, tmp_path / "b.jsonl", count=20, seed=7).read_text()
    assert a == b
    with pytest.raises(LoadError):
        peers.write_triton_bodies([], tmp_path / "none.jsonl")


def test_urls_argv_and_env(tmp_path: Path) -> None:
    assert peers.triton_ready_url(8123) == "http://127.0.0.1:8123/v2/models/textclf/ready"
    assert peers.triton_infer_url(8123) == "http://127.0.0.1:8123/v2/models/textclf/infer"
    argv = peers.pytriton_argv(Path("/v/bin/python"), tmp_path, 8123, instances=2, queue_delay_us=500)
    assert argv[:6] == ["/v/bin/python", "-m", "bench.apps.pytriton_ort", str(tmp_path), "--port", "8123"]
    assert argv[6:] == ["--instances", "2", "--queue-delay-us", "500"]
    with pytest.raises(TypeError, match="workers"):
        peers.pytriton_argv(Path("python"), tmp_path, 1, workers=2)
    env = peers.pytriton_env(tmp_path)
    assert env["PYTHONPATH"] == str(tmp_path) and env["HF_HUB_OFFLINE"] == "1"


def test_the_venv_dir_is_keyed_by_the_requirements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert peers.PYTRITON_REQUIREMENTS.is_file()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    requirements = tmp_path / "requirements-pytriton.txt"
    monkeypatch.setattr(peers, "PYTRITON_REQUIREMENTS", requirements)
    requirements.write_text("nvidia-pytriton==0.7.0\n")
    first = peers.pytriton_venv_dir()
    assert first.parent == tmp_path / "cache" / "textclf" and first.name.startswith("pytriton-")
    assert len(first.name.removeprefix("pytriton-")) == 12
    assert peers.pytriton_venv_dir() == first
    requirements.write_text("nvidia-pytriton==0.7.1\n")
    assert peers.pytriton_venv_dir() != first
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert peers.pytriton_venv_dir().parent == tmp_path / "home" / ".cache" / "textclf"


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# A stand-in for `python3 -m venv DIR`: makes DIR/bin/python, whose pip fails like an unreachable index.
FAKE_VENV = """\
echo "$@" >> "$(dirname "$0")/calls"
mkdir -p "$3/bin"
cat > "$3/bin/python" <<'EOF'
#!/bin/sh
echo "ERROR: Could not find a version that satisfies the requirement nvidia-pytriton==0.7.0" >&2
exit 1
EOF
chmod +x "$3/bin/python"
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_no_interpreter_to_create_it_gives_a_reason(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "BASE_PYTHON", str(tmp_path / "no-such-python"))
    messages: list[str] = []
    python, reason = peers.ensure_pytriton(messages.append)
    assert python is None
    assert "creating the venv" in reason and "no-such-python" in reason
    assert messages and "creating the PyTriton venv" in messages[0]
    assert not peers.pytriton_venv_dir().exists()


def test_a_failed_install_gives_pips_reason_and_leaves_no_half_venv(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "BASE_PYTHON", str(_script(tmp_path / "bin" / "python3", FAKE_VENV)))
    python, reason = peers.ensure_pytriton(lambda _: None)
    assert python is None
    assert "pip install -r requirements-pytriton.txt failed (1)" in reason
    assert "Could not find a version" in reason
    venv = peers.pytriton_venv_dir()
    assert not venv.exists()
    assert "Could not find a version" in (venv.parent / f"{venv.name}-install.log").read_text()


def test_a_half_made_venv_is_redone_and_a_finished_one_reused(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = peers.pytriton_venv_dir()
    _script(venv / "bin" / "python", "exit 0\n")  # imports fine, but no marker: a broken earlier install
    (venv / "leftover").write_text("half")
    monkeypatch.setattr(peers, "BASE_PYTHON", str(_script(tmp_path / "bin" / "python3", FAKE_VENV)))
    assert peers.ensure_pytriton(lambda _: None)[0] is None
    assert (tmp_path / "bin" / "calls").read_text().startswith("-m venv ")
    assert not (venv / "leftover").exists()

    _script(venv / "bin" / "python", "exit 0\n")
    (venv / peers.MARKER).write_text("{}")
    messages: list[str] = []
    assert peers.ensure_pytriton(messages.append) == (venv / "bin" / "python", "")
    assert messages == []
    assert len((tmp_path / "bin" / "calls").read_text().splitlines()) == 1  # not created again

"""params.yaml and the typed view of it agree: a key left out of a user's file means what the shipped
file says, never a second, silently different default."""

from __future__ import annotations

from pathlib import Path

from training.params import Params, load_params

REPO = Path(__file__).resolve().parents[2]


def flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_code_defaults_equal_the_shipped_params() -> None:
    shipped = flat(load_params(REPO / "params.yaml").model_dump(mode="json"))
    defaults = flat(Params().model_dump(mode="json"))
    assert {k: (defaults[k], v) for k, v in shipped.items() if defaults[k] != v} == {}


def test_a_partial_params_file_means_the_shipped_values(tmp_path: Path) -> None:
    partial = tmp_path / "params.yaml"
    partial.write_text("lstm:\n  epochs: 3\n")
    loaded = load_params(partial).model_dump()
    assert loaded["lstm"]["epochs"] == 3
    loaded["lstm"]["epochs"] = Params().lstm.epochs
    assert loaded == Params().model_dump()

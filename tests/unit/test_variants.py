"""Variant names: one parser for the CLI, export, selection, the Makefile's MODEL, bench and store tags."""

from __future__ import annotations

import pytest

from textclf import paths
from textclf.core.contract import ModelMetadata
from textclf.core.variants import Variant, VariantError, variants_of


@pytest.mark.parametrize(
    ("name", "family", "precision"),
    [("logreg", "logreg", "fp32"), ("bert-int8", "bert", "int8"), (" lstm-int8 ", "lstm", "int8")],
)
def test_parse_and_name_round_trip(name: str, family: str, precision: str) -> None:
    variant = Variant.parse(name)
    assert (variant.family, variant.precision) == (family, precision)
    assert Variant.parse(variant.name) == variant and str(variant) == name.strip()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bert-fp16", "unknown precision 'fp16'"),
        ("bert-", "a precision must follow '-'"),
        ("bert-fp32", "named by its family alone"),
        ("", "is not a family name"),
        ("BERT", "is not a family name"),
        ("../etc", "is not a family name"),
    ],
)
def test_bad_names_are_explained(name: str, message: str) -> None:
    with pytest.raises(VariantError, match=message):
        Variant.parse(name)


def test_store_tags_folders_and_export_variants_agree() -> None:
    meta = ModelMetadata(family="bert", version="abc", input_kind="tokens", data_sha256="x", precision="int8")
    assert meta.variant == Variant("bert", "int8")
    assert meta.store_tag == "textclf-bert-int8:abc"
    assert str(paths.variant_dir(meta.variant)) == "artifacts/onnx/bert/int8"
    assert [v.name for v in variants_of("lstm", quantized=True)] == ["lstm", "lstm-int8"]
    assert [v.name for v in variants_of("logreg", quantized=False)] == ["logreg"]

"""Variants: a model family at a precision (`bert`, `bert-int8`), parsed and named in one place.

The CLI, the export, champion selection, the Makefile's MODEL, the benchmark and the BentoML store
tags all speak of a served model by its variant name; this module is the only one that builds or
splits those names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEFAULT_PRECISION: Precision = "fp32"
CHAMPION = "champion"  # the MLflow registry alias, accepted wherever a variant is
STORE_PREFIX = "textclf-"  # BentoML model store names: textclf-<variant>
_FAMILY = re.compile(r"[a-z][a-z0-9_]*")


class VariantError(ValueError):
    """A string that is not a variant name (family[-precision])."""


@dataclass(frozen=True, order=True)
class Variant:
    """One exported model of a family: fp32 (named by the family alone) or a quantised precision."""

    family: str
    precision: Precision = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        if not _FAMILY.fullmatch(self.family):
            raise VariantError(f"{self.family!r} is not a family name (lower-case letters, digits, _)")
        if self.precision not in PRECISIONS:
            raise VariantError(
                f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}"
            )

    @classmethod
    def parse(cls, name: str) -> Variant:
        """`bert` → Variant("bert", "fp32"); `bert-int8` → Variant("bert", "int8")."""
        family, sep, precision = name.strip().partition("-")
        if sep and not precision:
            raise VariantError(f"{name!r}: a precision must follow '-' (e.g. {family}-int8)")
        if precision == DEFAULT_PRECISION:
            raise VariantError(f"{name!r}: the fp32 variant is named by its family alone ({family!r})")
        return cls(family, precision or DEFAULT_PRECISION)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        """The variant's name: the family for fp32, `<family>-<precision>` otherwise."""
        if self.precision == DEFAULT_PRECISION:
            return self.family
        return f"{self.family}-{self.precision}"

    @property
    def store_name(self) -> str:
        """Its name in the BentoML model store (version: a hash of the ONNX file and its calibration)."""
        return STORE_PREFIX + self.name

    def __str__(self) -> str:
        return self.name


def variants_of(family: str, quantized: bool) -> list[Variant]:
    """The variants an export of `family` produces: fp32, and int8 when it is quantised."""
    return [Variant(family)] + ([Variant(family, "int8")] if quantized else [])

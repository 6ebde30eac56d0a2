"""Model families behind one interface (`ModelFamily`); `create_family` is the factory by name."""

from training.families.base import ModelFamily
from training.families.factory import FAMILIES, UnknownFamilyError, create_family, load_family

__all__ = ["FAMILIES", "ModelFamily", "UnknownFamilyError", "create_family", "load_family"]

"""Reading and writing SAEs: the native folder format (SAELens's layout)."""

from saehooks.io.native import load_sae, save_sae

__all__ = ["load_sae", "save_sae"]

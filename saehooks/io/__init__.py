"""Reading and writing SAEs: the native folder format (SAELens's layout) and foreign layouts."""

from saehooks.io.formats import detect_format, load_folder, load_hub
from saehooks.io.native import load_sae, save_sae

__all__ = ["detect_format", "load_folder", "load_hub", "load_sae", "save_sae"]

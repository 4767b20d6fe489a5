"""Command-line arguments shared by the training scripts that run in the other libraries' venvs.

This module uses the standard library only, because those venvs do not contain saehooks.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def worker_parser(description: str) -> argparse.ArgumentParser:
    """Return a parser with the workload arguments every training script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="local Hugging Face model folder")
    parser.add_argument("--dataset", required=True, help=".jsonl file with a 'text' field")
    parser.add_argument("--out", type=Path, required=True, help="folder for the library's run")
    parser.add_argument("--timing", type=Path, required=True, help="JSON file for the timing")
    parser.add_argument("--d-sae", type=int, required=True, help="number of latents")
    parser.add_argument("--k", type=int, required=True, help="latents kept per token")
    parser.add_argument("--tokens", type=int, required=True, help="training tokens")
    parser.add_argument("--batch-tokens", type=int, required=True, help="tokens per step")
    parser.add_argument("--context-size", type=int, required=True, help="tokens per context")
    return parser

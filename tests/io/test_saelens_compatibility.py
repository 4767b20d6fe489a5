"""SAELens itself loads folders that saehooks saves and computes the same outputs.

Runs only where ``sae_lens`` is installed, so it is skipped in saehooks's own environment.
scripts/beside-saelens.sh installs sae-lens and saehooks side by side and runs it there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from saehooks.io import load_sae, save_sae
from saehooks.pretrained import index_path, read_index
from saehooks.sae import SAEConfig, build_sae

sae_lens = pytest.importorskip("sae_lens")

HOOK_NAME = "blocks.2.hook_resid_post"

# saehooks config values, and the SAELens architecture of the saved folder. save_sae writes
# BatchTopK and Matryoshka SAEs as JumpReLU SAEs that share one threshold.
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "relu": ({"architecture": "relu", "k": None}, "standard"),
    "relu-no-b-dec-input": (
        {"architecture": "relu", "k": None, "apply_b_dec_to_input": False},
        "standard",
    ),
    "topk": ({"architecture": "topk", "k": 4}, "topk"),
    "topk-float16": ({"architecture": "topk", "k": 4, "dtype": "float16"}, "topk"),
    "jumprelu": ({"architecture": "jumprelu", "k": None}, "jumprelu"),
    "gated": ({"architecture": "gated", "k": None}, "gated"),
    "batchtopk": ({"architecture": "batchtopk", "k": 4}, "jumprelu"),
    "matryoshka": (
        {"architecture": "matryoshka", "k": 4, "matryoshka_widths": (5, 20)},
        "jumprelu",
    ),
}


def random_sae(values: dict[str, Any]) -> torch.nn.Module:
    """Build an SAE whose parameters, biases included, are random, so a misplaced one shows."""
    cfg = SAEConfig(d_in=8, d_sae=20, hook_name=HOOK_NAME, model_name="tiny-llama", **values)
    sae = build_sae(cfg)
    with torch.no_grad():
        for parameter in sae.parameters(recurse=False):
            parameter.copy_(torch.randn_like(parameter) * 0.5)
        if hasattr(sae, "threshold_updates"):  # BatchTopK: as if a tracker had estimated it
            sae.threshold.fill_(0.3)
            sae.threshold_updates.fill_(5)
    return sae


@pytest.mark.parametrize("case", sorted(CASES))
def test_saelens_loads_saved_folder(tmp_path: Path, case: str) -> None:
    values, saelens_architecture = CASES[case]
    torch.manual_seed(11)
    folder = save_sae(random_sae(values), tmp_path / case)
    ours = load_sae(folder)  # BatchTopK comes back as the JumpReLU SAE that was written

    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")

    assert theirs.cfg.architecture() == saelens_architecture
    assert theirs.cfg.d_in == 8
    assert theirs.cfg.d_sae == 20
    assert theirs.cfg.dtype == ours.cfg.dtype
    assert theirs.cfg.apply_b_dec_to_input == ours.cfg.apply_b_dec_to_input
    assert theirs.cfg.metadata.hook_name == HOOK_NAME
    assert theirs.cfg.metadata.model_name == "tiny-llama"
    x = torch.randn(3, 2, 8).to(ours.W_enc.dtype)  # [batch, pos, d_in]
    with torch.no_grad():
        acts = ours.encode(x)
        assert acts.count_nonzero() > 0
        torch.testing.assert_close(theirs.encode(x), acts)
        torch.testing.assert_close(theirs.decode(acts), ours.decode(acts))
        torch.testing.assert_close(theirs(x), ours(x))


def test_saelens_loads_shipped_dictionaries() -> None:
    index = index_path()
    entries = [entry for entry in read_index(index) if "path" in entry.weights]
    assert entries, f"{index} lists no dictionary stored beside it"

    for entry in entries:
        folder = index.parent / entry.weights["path"]
        ours = load_sae(folder)
        theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")

        assert theirs.cfg.metadata.hook_name == entry.hook_name
        assert theirs.W_enc.dtype == ours.W_enc.dtype
        torch.manual_seed(3)
        x = (torch.randn(16, entry.d_in) * 3).to(ours.W_enc.dtype)  # [n, d_in]
        with torch.no_grad():
            torch.testing.assert_close(theirs.encode(x), ours.encode(x))
            # The float16 decoders sum the same products in a different order: measured up to
            # 2 units in the last place (0.001 near 0.7) with sae-lens 6.54.12.
            torch.testing.assert_close(theirs(x), ours(x), atol=2e-3, rtol=2e-3)

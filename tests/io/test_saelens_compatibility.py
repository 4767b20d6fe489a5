"""SAELens itself loads folders that saehooks saves and computes the same outputs.

Runs only where ``sae_lens`` is installed. saehooks's own environment pins TransformerLens 4,
which sae-lens 6 does not accept, so this test is skipped there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saehooks.io import save_sae
from saehooks.sae import SAEConfig, build_sae

sae_lens = pytest.importorskip("sae_lens")

ARCHITECTURES = {
    "relu": {"architecture": "relu", "k": None},
    "topk": {"architecture": "topk", "k": 4},
    "jumprelu": {"architecture": "jumprelu", "k": None},
    "gated": {"architecture": "gated", "k": None},
}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_saelens_loads_saved_folder(tmp_path: Path, architecture: str) -> None:
    torch.manual_seed(11)
    sae = build_sae(SAEConfig(d_in=8, d_sae=20, **ARCHITECTURES[architecture]))
    with torch.no_grad():
        for parameter in sae.parameters(recurse=False):
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    folder = save_sae(sae, tmp_path / architecture)

    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    x = torch.randn(6, 8)  # [n, d_in]
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), sae.encode(x))
        torch.testing.assert_close(theirs.decode(sae.encode(x)), sae(x))

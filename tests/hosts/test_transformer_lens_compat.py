"""The supported transformer-lens range and the calls that differ between its 3.x and 4.x lines.

The project's own environment has transformer-lens 4.x. scripts/beside-saelens.sh runs this file
again beside sae-lens, with transformer-lens 3.x, where the same checks must hold.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

from saehooks.hosts import TransformerLensHost
from saehooks.hosts.transformer_lens_compat import (
    SUPPORTED_VERSIONS,
    TRANSFORMER_LENS_MAJOR,
    check_hook_can_fire,
    supported_major_version,
)

TINY_LAYERS = 4  # as built by save_tiny_llama in conftest.py

# Hook points of each block that stay off until a set_use_* switch, on the tiny Llama in
# transformer-lens 3.9.0 and 4.3.0 alike. The last four are aliases of attn.* points.
SWITCHED_OFF_IN_BLOCK = {
    "hook_mlp_in",
    "attn.hook_result",
    "attn.hook_attn_in",
    "attn.hook_q_input",
    "attn.hook_k_input",
    "attn.hook_v_input",
    "hook_attn_in",
    "hook_q_input",
    "hook_k_input",
    "hook_v_input",
}


@pytest.mark.parametrize(
    ("installed", "major"),
    [("3.9.0", 3), ("3.9.2.post1", 3), ("4.0.0rc1", 4), ("4.3.0", 4), ("4.99", 4)],
)
def test_supported_versions_give_major(installed: str, major: int) -> None:
    assert supported_major_version(installed) == major


@pytest.mark.parametrize("installed", ["2.16.1", "3.8.1", "3.9.0rc1", "5.0.0", "5.0.0rc1"])
def test_unsupported_version_raises(installed: str) -> None:
    with pytest.raises(ImportError, match=f"transformer-lens {installed} is installed") as error:
        supported_major_version(installed)
    assert f"pip install 'transformer-lens{SUPPORTED_VERSIONS}'" in str(error.value)


def test_invalid_version_raises() -> None:
    with pytest.raises(ImportError, match="invalid version 'main'"):
        supported_major_version("main")


def test_installed_major_detected() -> None:
    assert TRANSFORMER_LENS_MAJOR == Version(version("transformer-lens")).major


def test_pyproject_declares_supported_range() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("pyproject.toml is not beside the tests")

    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]

    assert f"transformer-lens{SUPPORTED_VERSIONS}" in dependencies


def test_switched_off_hook_raises(tiny_host: TransformerLensHost) -> None:
    bridge = tiny_host.bridge
    for name in ("blocks.0.hook_mlp_in", "blocks.2.hook_attn_in"):
        with pytest.raises(ValueError, match=r"Call set_use_\w+\(True\)"):
            check_hook_can_fire(bridge, name, bridge.hook_dict[name])


def test_firing_hook_passes(tiny_host: TransformerLensHost) -> None:
    bridge = tiny_host.bridge
    for name in ("blocks.1.hook_resid_post", "blocks.1.hook_out", "blocks.3.mlp.hook_out"):
        check_hook_can_fire(bridge, name, bridge.hook_dict[name])


def test_host_leaves_out_switched_off_hooks(tiny_host: TransformerLensHost) -> None:
    all_names = set(tiny_host.bridge.hook_dict)
    expected_off = {
        f"blocks.{layer}.{suffix}"
        for layer in range(TINY_LAYERS)
        for suffix in SWITCHED_OFF_IN_BLOCK
    }

    assert expected_off <= all_names
    assert all_names - set(tiny_host.hook_names()) == expected_off

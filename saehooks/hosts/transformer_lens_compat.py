"""The supported transformer-lens versions, and the one place that handles their differences.

saehooks runs on the ``TransformerBridge`` of transformer-lens 3.x (from 3.9) and 4.x. Both lines
are needed: sae-lens 6 requires transformer-lens below 4 (sae-lens 6.54.12 pins
``>=2.16.1,<4.0.0``), so an environment shared with sae-lens has 3.x.

The one difference in the bridge API that saehooks calls, found by reading and running
transformer-lens 3.9.0 and 4.3.0: ``TransformerBridge.check_hooks_to_add`` takes
``(hook_point, hook_point_name, hook)`` in 4.x and only ``hook_point_name`` in 3.x.

Importing this module checks the installed version first, so an unsupported one fails with a
message naming the required range rather than with an import error from inside transformer-lens.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

SUPPORTED_VERSIONS = ">=3.9,<5"
"""The transformer-lens versions saehooks supports, as in the dependency list of pyproject.toml."""


def supported_major_version(installed: str) -> int:
    """Return the major version of transformer-lens version ``installed``.

    Pre-releases inside the range count as supported.

    Raises:
        ImportError: ``installed`` is not a valid version or lies outside ``SUPPORTED_VERSIONS``.
    """
    fix = f"install a supported one with `pip install 'transformer-lens{SUPPORTED_VERSIONS}'`"
    try:
        parsed = Version(installed)
    except InvalidVersion as error:
        raise ImportError(
            f"transformer-lens reports the invalid version {installed!r}; {fix}"
        ) from error
    if not SpecifierSet(SUPPORTED_VERSIONS).contains(parsed, prereleases=True):
        raise ImportError(
            f"transformer-lens {installed} is installed, but saehooks needs its "
            f"TransformerBridge from transformer-lens{SUPPORTED_VERSIONS}; {fix}"
        )
    return parsed.major


def _installed_major_version() -> int:
    try:
        installed = version("transformer-lens")
    except PackageNotFoundError as error:
        raise ImportError(
            "transformer-lens is not installed; install it with "
            f"`pip install 'transformer-lens{SUPPORTED_VERSIONS}'`"
        ) from error
    return supported_major_version(installed)


TRANSFORMER_LENS_MAJOR = _installed_major_version()
"""The major version of the installed transformer-lens: 3 or 4."""

# The bridge is imported only after the version check above, so that an old transformer-lens
# without it fails with the check's message.
from transformer_lens.hook_points import HookPoint  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402


def check_hook_can_fire(bridge: TransformerBridge, name: str, hook_point: HookPoint) -> None:
    """Raise ``ValueError`` when ``name`` is a hook point that the bridge has switched off.

    Some hook points fire only after a ``bridge.set_use_*(True)`` switch. The check uses the
    hook point's own name, because an alias can name a hook point that is not switched off.
    """
    if TRANSFORMER_LENS_MAJOR >= 4:
        bridge.check_hooks_to_add(hook_point, name, _no_op_hook)
    else:
        # Type checkers read the signature of whichever version is installed, usually 4.x.
        bridge.check_hooks_to_add(hook_point.name or name)  # type: ignore[call-arg, arg-type]


def _no_op_hook(activation: object, *, hook: HookPoint) -> None:
    return None


__all__ = [
    "SUPPORTED_VERSIONS",
    "TRANSFORMER_LENS_MAJOR",
    "HookPoint",
    "TransformerBridge",
    "check_hook_can_fire",
    "supported_major_version",
]

"""Options that choose the SAE architecture, plain or composite, and build its config."""

from __future__ import annotations

import argparse
import dataclasses

from saehooks.config_args import (
    add_config_arguments,
    config_from_args,
    field_docs,
    record_flags,
)
from saehooks.sae import COMPOSITE_CONFIGS, SAE_CLASSES, CompositeConfig, SAEConfig
from saehooks.sae.config import K_ARCHITECTURES

# Composite config fields that the shared options (--d-sae, --k, --dtype, --hook-name) set, or
# that the pipeline fills in.
SHARED_FIELDS = ("d_in", "d_sae", "k", "dtype", "hook_name", "model_name")
COMPOSITE_HELP = (
    "Composites: 'moe' (TopK expert SAEs behind a router), 'hierarchical' (TopK parent latents "
    "that gate small child SAEs) or 'deep' (a hidden ReLU layer before the TopK latents), each "
    "with the options of its own group."
)


def add_architecture_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--architecture``, the ``SAEConfig`` options and every composite's own options.

    ``--d-sae`` and ``--k`` are left to the caller, because their defaults depend on the
    architecture.
    """
    skip = ("architecture", "d_in", "hook_name", "model_name", "d_sae", "k")
    add_config_arguments(parser, SAEConfig, skip=skip)
    default = SAEConfig.__dataclass_fields__["architecture"].default
    parser.add_argument(
        "--architecture",
        choices=list(SAE_CLASSES),
        default=default,
        help=f"{field_docs(SAEConfig)['architecture']} {COMPOSITE_HELP} (default: {default})",
    )
    record_flags(parser, {"architecture": "--architecture"})
    for config_class in COMPOSITE_CONFIGS.values():
        add_config_arguments(parser, config_class, skip=SHARED_FIELDS)


def sae_config_from_args(
    args: argparse.Namespace, d_in: int, default_k: int
) -> SAEConfig | CompositeConfig:
    """Build the config of the architecture that ``args.architecture`` names.

    ``default_k`` applies to the plain architectures that keep k latents per token when ``--k``
    is not given. Each composite has its own default k.

    Raises:
        ValueError: an option of another composite was set, or the config is invalid.
    """
    _reject_options_of_other_composites(args)
    config_class = COMPOSITE_CONFIGS.get(args.architecture)
    if config_class is None:
        k = args.k
        if k is None and args.architecture in K_ARCHITECTURES:
            k = default_k
        return config_from_args(SAEConfig, args, d_in=d_in, d_sae=args.d_sae, k=k)

    k = args.k if args.k is not None else config_class.__dataclass_fields__["k"].default
    return config_from_args(config_class, args, d_in=d_in, d_sae=args.d_sae, k=k)


def _reject_options_of_other_composites(args: argparse.Namespace) -> None:
    for architecture, config_class in COMPOSITE_CONFIGS.items():
        if architecture == args.architecture:
            continue
        for field in dataclasses.fields(config_class):  # type: ignore[arg-type]  # a dataclass
            if field.name in SHARED_FIELDS:
                continue
            if getattr(args, field.name) != field.default:
                flag = "--" + field.name.replace("_", "-")
                raise ValueError(
                    f"{flag} applies only to --architecture {architecture}, but the "
                    f"architecture is {args.architecture!r}; drop {flag} or change --architecture"
                )

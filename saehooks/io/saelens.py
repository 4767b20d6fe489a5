"""Read SAELens folders: ``cfg.json`` and ``sae_weights.safetensors``, in every config version.

Two config layouts exist (checked against SAELens's loading code, ``sae_lens/loading``):

- SAELens 6 writes ``architecture`` (``standard``, ``topk``, ``jumprelu``, ``gated``), ``k`` for
  TopK, and a ``metadata`` object that contains ``hook_name``, ``model_name`` and the training data.
- Earlier versions write one flat object: ``hook_name`` (or ``hook_point``), ``model_name``, and
  ``activation_fn_str`` or ``activation_fn`` (``relu`` or ``topk``, with ``k`` in
  ``activation_fn_kwargs``) beside an optional ``architecture``.

The activation is never guessed: a config that names an unknown activation, or names neither an
architecture nor an activation, raises.

Two stored normalisation factors are folded into the weights, so the loaded SAE takes raw
activations and returns the same reconstruction as SAELens:

- ``normalize_activations: "expected_average_only_in"`` with ``scaling_factor`` in the folder's
  ``activation_scaler.json`` (a checkpoint trained on ``scaling_factor * x``), folded with
  :meth:`SparseAutoencoder.fold_input_scale`;
- a per-latent ``scaling_factor`` tensor with ``finetuning_scaling_factor: true`` (older files),
  which multiplies the latent activations before decoding, folded into the rows of ``W_dec``.
  The loaded SAE's latent activations are then SAELens's before that multiplication.

A TopK config with ``rescale_acts_by_decoder_norm: true`` (the SAELens 6 TopK training default)
multiplies the pre-activations by each decoder row's norm before choosing the top k, and divides
the latent activations by it again before decoding. Scaling column i of ``W_enc`` and ``b_enc``
by that norm and dividing row i of ``W_dec`` by it computes the same thing, so the loader folds
it into the weights. The loaded SAE's latent activations are SAELens's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch

from saehooks.io.checked import (
    TensorSpec,
    assemble,
    check_tensors,
    parse_dtype,
    read_json_object,
    read_safetensors,
    require_file,
    settle_dtype,
)
from saehooks.sae.config import SAEConfig
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

logger = logging.getLogger(__name__)

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SCALER_FILENAME = "activation_scaler.json"
LAYOUT = "SAELens"

ARCHITECTURES = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}
ACTIVATIONS = {"relu": "relu", "topk": "topk"}
# Keys that change what the SAE computes; each is read below.
FORWARD_KEYS = frozenset(
    {
        "architecture", "d_in", "d_sae", "dtype", "k", "apply_b_dec_to_input",
        "normalize_activations", "reshape_activations", "activation_fn", "activation_fn_str",
        "activation_fn_kwargs", "finetuning_scaling_factor", "rescale_acts_by_decoder_norm",
        "hook_name", "hook_point", "model_name", "hook_head_index", "hook_point_head_index",
        "metadata", "device",
    }
)  # fmt: skip
# Keys that describe training, data or provenance and leave the forward pass unchanged.
DESCRIPTIVE_KEYS = frozenset(
    {
        "hook_layer", "hook_point_layer", "context_size", "prepend_bos", "dataset_path",
        "dataset_trust_remote_code", "sae_lens_training_version", "sae_lens_version",
        "neuronpedia_id", "model_from_pretrained_kwargs", "seqpos_slice", "model_class_name",
        "exclude_special_tokens", "sequence_separator_token", "disable_concat_sequences",
        "normalize_sae_decoder", "noise_scale", "decoder_orthogonal_init",
        "init_encoder_as_decoder_transpose", "decoder_heuristic_init", "decoder_init_norm",
        "l1_coefficient", "lp_norm",
        "l1_warm_up_steps", "jumprelu_init_threshold", "jumprelu_bandwidth", "l0_coefficient",
        "l0_warm_up_steps", "pre_act_loss_coefficient", "jumprelu_sparsity_loss_mode",
        "jumprelu_tanh_scale", "aux_loss_coefficient", "mse_loss_normalization",
        "scale_sparsity_penalty_by_decoder_norm", "topk_threshold_lr", "use_error_term",
    }
)  # fmt: skip


class Normalisation(NamedTuple):
    """Stored factors to fold into the weights after loading."""

    input_scale: float | None
    """Factor the SAE's training inputs were multiplied by, or None."""
    latent_scale: bool
    """Whether the file's per-latent ``scaling_factor`` tensor must be folded into W_dec."""
    decoder_norm_rescale: bool = False
    """Whether TopK selection scales pre-activations by the decoder row norms (to be folded)."""


def load_saelens(
    folder: str | Path,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
) -> SparseAutoencoder:
    """Load a SAELens SAE folder.

    Args:
        folder: a folder with ``cfg.json`` and ``sae_weights.safetensors``.
        device: where the parameters live.
        dtype: cast the parameters to this dtype; ``None`` keeps the config's dtype, or the
            file's when the config states none.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the config has an unknown key, architecture or activation, or a setting
            saehooks cannot reproduce; the weights are corrupted or disagree with the config.
    """
    folder = Path(folder)
    cfg_path = require_file(folder / CFG_FILENAME, LAYOUT)
    weights_path = require_file(folder / WEIGHTS_FILENAME, LAYOUT)
    values = read_json_object(cfg_path)
    cfg, stated_dtype, normalisation = saelens_config(values, cfg_path, _scaler_factor(folder))

    tensors = read_safetensors(weights_path)
    if "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors.pop("log_threshold").exp()
    scaling = tensors.pop("scaling_factor", None)
    specs = _tensor_specs(cfg)
    check_tensors(tensors, specs, weights_path)
    file_dtype = settle_dtype(stated_dtype, tensors, specs, weights_path, frozenset({"threshold"}))
    cfg = SAEConfig.from_dict({**cfg.to_dict(), "dtype": file_dtype})

    if normalisation.decoder_norm_rescale:
        _fold_decoder_norm(tensors, cfg_path)
    if scaling is not None:
        tensors["W_dec"] = _fold_latent_scale(tensors["W_dec"], scaling, normalisation, cfg_path)
    sae = assemble(cfg, tensors, device, dtype)
    if normalisation.input_scale is not None:
        sae.fold_input_scale(normalisation.input_scale)
    logger.info("loaded SAELens SAE (%s, d_sae=%d) from %s", cfg.architecture, cfg.d_sae, folder)
    return sae


def saelens_config(
    values: dict[str, Any], source: Path, scaler_factor: float | None = None
) -> tuple[SAEConfig, str | None, Normalisation]:
    """Translate SAELens ``cfg.json`` contents into an SAEConfig.

    Returns the config (in float32 until the file's dtype is known), the dtype the config states
    (``None`` when it states none) and the normalisation to fold in.
    """
    unknown = sorted(set(values) - FORWARD_KEYS - DESCRIPTIVE_KEYS)
    if unknown:
        raise ValueError(
            f"{source}: unknown keys {unknown}; saehooks reads {sorted(FORWARD_KEYS)} and "
            "ignores only keys known to leave the forward pass unchanged"
        )
    metadata = values.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: 'metadata' must be a JSON object, found {metadata!r}")
    architecture, k = _architecture(values, source)
    _reject_unsupported(values, metadata, architecture, source)

    stated = values.get("dtype")
    cfg = SAEConfig(
        d_in=_required(values, "d_in", source),
        d_sae=_required(values, "d_sae", source),
        architecture=architecture,
        k=k,
        apply_b_dec_to_input=bool(values.get("apply_b_dec_to_input", True)),
        hook_name=_first(values, metadata, ("hook_name", "hook_point")),
        model_name=_first(values, metadata, ("model_name",)),
    )
    normalisation = Normalisation(
        input_scale=_input_scale(values, scaler_factor, source),
        latent_scale=bool(values.get("finetuning_scaling_factor", False)),
        decoder_norm_rescale=bool(values.get("rescale_acts_by_decoder_norm", False)),
    )
    return cfg, (parse_dtype(stated, source) if stated is not None else None), normalisation


def _architecture(values: dict[str, Any], source: Path) -> tuple[str, int | None]:
    """The saehooks architecture and k, from ``architecture`` and the activation keys."""
    activation = values.get("activation_fn", values.get("activation_fn_str"))
    named = values.get("architecture")
    if named is not None and named not in ARCHITECTURES:
        raise ValueError(
            f"{source}: architecture {named!r} is not supported; expected one of "
            f"{sorted(ARCHITECTURES)}"
        )
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(
            f"{source}: activation {activation!r} is unknown; saehooks reads "
            f"{sorted(ACTIVATIONS)} and never falls back to ReLU"
        )
    if named is None and activation is None:
        raise ValueError(
            f"{source}: names neither an architecture nor an activation; add "
            f"'architecture' (one of {sorted(ARCHITECTURES)}) to say which SAE this is"
        )
    if named in (None, "standard") and activation == "topk":
        named = "topk"
    if named not in (None, "standard", "topk") and activation not in (None, "relu"):
        raise ValueError(
            f"{source}: architecture {named!r} with activation {activation!r} is not supported"
        )
    architecture = ARCHITECTURES[named or "standard"]
    if architecture != "topk":
        return architecture, None
    k = values.get("k", (values.get("activation_fn_kwargs") or {}).get("k"))
    if not isinstance(k, int):
        raise ValueError(
            f"{source}: a TopK SAE needs an integer k (top-level 'k' or "
            f"'activation_fn_kwargs.k'), found {k!r}"
        )
    return architecture, k


def _reject_unsupported(
    values: dict[str, Any], metadata: dict[str, Any], architecture: str, source: Path
) -> None:
    for key in ("hook_head_index", "hook_point_head_index"):
        if values.get(key, metadata.get(key)) is not None:
            raise ValueError(f"{source}: {key} is set; per-head SAEs are not supported")
    if values.get("reshape_activations", "none") != "none":
        raise ValueError(
            f"{source}: reshape_activations={values['reshape_activations']!r} is not supported; "
            "saehooks reads SAEs on unreshaped activations only"
        )
    if values.get("rescale_acts_by_decoder_norm", False) and architecture != "topk":
        raise ValueError(
            f"{source}: rescale_acts_by_decoder_norm=true is supported for TopK SAEs only, "
            f"not for architecture {architecture!r}"
        )


def _input_scale(values: dict[str, Any], factor: float | None, source: Path) -> float | None:
    """The input scaling factor to fold, from ``normalize_activations`` and the scaler file."""
    mode = values.get("normalize_activations", "none")
    if mode is True:  # configs before SAELens 3 stored a flag
        mode = "expected_average_only_in"
    if mode in ("none", None, False):
        if factor is not None:
            raise ValueError(
                f"{source}: normalize_activations is 'none' but {SCALER_FILENAME} stores "
                f"scaling_factor={factor}; remove one of them"
            )
        return None
    if mode != "expected_average_only_in":
        raise ValueError(
            f"{source}: normalize_activations={mode!r} is not supported; expected 'none' or "
            "'expected_average_only_in'"
        )
    if factor is None:
        raise ValueError(
            f"{source}: normalize_activations='expected_average_only_in' needs the stored "
            f"scaling_factor in {SCALER_FILENAME} beside it, which is missing or null"
        )
    return factor


def _scaler_factor(folder: Path) -> float | None:
    path = folder / SCALER_FILENAME
    if not path.is_file():
        return None
    factor = read_json_object(path).get("scaling_factor")
    if factor is not None and not (isinstance(factor, (int, float)) and factor > 0):
        raise ValueError(f"{path}: scaling_factor must be a positive number, found {factor!r}")
    return None if factor is None else float(factor)


def _fold_latent_scale(
    W_dec: torch.Tensor, scaling: torch.Tensor, normalisation: Normalisation, source: Path
) -> torch.Tensor:
    """Multiply decoder row i by ``scaling[i]``: ``[d_sae, d_in] * [d_sae, 1]``."""
    if tuple(scaling.shape) != (W_dec.shape[0],):
        raise ValueError(
            f"{source}: scaling_factor has shape {tuple(scaling.shape)}, expected "
            f"({W_dec.shape[0]},)"
        )
    if torch.all(scaling == 1):
        return W_dec
    if not normalisation.latent_scale:
        raise ValueError(
            f"{source}: the weights contain a scaling_factor other than 1, but "
            "finetuning_scaling_factor is not true; the files disagree"
        )
    return (W_dec.float() * scaling.float()[:, None]).to(W_dec.dtype)  # [d_sae, d_in]


def _fold_decoder_norm(tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Fold SAELens's decoder-norm rescaling of TopK pre-activations into the weights in place.

    With ``n`` the row norms of ``W_dec`` ``[d_sae]``: ``W_enc`` and ``b_enc`` are multiplied by
    ``n`` per latent and the rows of ``W_dec`` are divided by it.
    """
    norms = tensors["W_dec"].float().norm(dim=-1)  # [d_sae]
    if not torch.all(norms > 0):
        zero = torch.nonzero(norms == 0).flatten()[:5].tolist()
        raise ValueError(
            f"{source}: rescale_acts_by_decoder_norm=true but decoder rows {zero} have zero "
            "norm, so SAELens itself would divide by zero; the weights are unusable"
        )
    for name, scaled in (
        ("W_enc", tensors["W_enc"].float() * norms),  # [d_in, d_sae] * [d_sae]
        ("b_enc", tensors["b_enc"].float() * norms),  # [d_sae]
        ("W_dec", tensors["W_dec"].float() / norms[:, None]),  # [d_sae, d_in] / [d_sae, 1]
    ):
        tensors[name] = scaled.to(tensors[name].dtype)


def _tensor_specs(cfg: SAEConfig) -> list[TensorSpec]:
    d_in, d_sae = cfg.d_in, cfg.d_sae
    base = [TensorSpec("W_enc", (d_in, d_sae)), TensorSpec("W_dec", (d_sae, d_in))]
    base.append(TensorSpec("b_dec", (d_in,)))
    if cfg.architecture == "gated":
        return base + [TensorSpec(name, (d_sae,)) for name in ("b_gate", "r_mag", "b_mag")]
    base.append(TensorSpec("b_enc", (d_sae,)))
    if cfg.architecture == "jumprelu":
        base.append(TensorSpec("threshold", (d_sae,)))
    return base


def _required(values: dict[str, Any], key: str, source: Path) -> Any:
    if key not in values:
        raise ValueError(f"{source}: required key {key!r} is missing")
    return values[key]


def _first(values: dict[str, Any], metadata: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        for place in (values, metadata):
            if place.get(key):
                return str(place[key])
    return ""

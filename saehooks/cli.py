"""The ``saehooks`` command: ``train`` an SAE, ``eval`` a saved one, list ``pretrained`` ones,
``harvest`` activations to shards."""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from saehooks.architecture_args import add_architecture_arguments, sae_config_from_args
from saehooks.config_args import (
    FLAGS_DEST,
    add_config_arguments,
    config_from_args,
    name_flags,
    record_flags,
)
from saehooks.resampling import RemedyConfig
from saehooks.sae import COMPOSITE_CONFIGS, SAE_CLASSES
from saehooks.sae.config import K_ARCHITECTURES
from saehooks.training.config import DataConfig, TrainingConfig

if TYPE_CHECKING:
    from saehooks.data import ActivationShards
    from saehooks.hosts import Host
    from saehooks.training.pipeline import TrainOutcome

logger = logging.getLogger(__name__)

DEFAULT_D_SAE = 4608
PLAIN_WITHOUT_K = tuple(
    name for name in SAE_CLASSES if name not in K_ARCHITECTURES and name not in COMPOSITE_CONFIGS
)
DEFAULT_TOPK_K = 32
DEFAULT_EVAL_TOKENS = 24_576
DEFAULT_HARVEST_TOKENS = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saehooks", description="Train and evaluate sparse autoencoders on LM activations."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train an SAE on live activations, then evaluate it on held-out text",
    )
    train.add_argument(
        "--out", type=Path, default=Path("runs/default"), help="run folder (default: runs/default)"
    )
    train.add_argument(
        "--eval-tokens",
        type=int,
        default=DEFAULT_EVAL_TOKENS,
        help="held-out tokens after BOS to evaluate on after training, at least 2, or 0 to "
        f"skip; whole contexts, the last one or two cut short (default: {DEFAULT_EVAL_TOKENS})",
    )
    train.add_argument("--quiet", action="store_true", help="hide the progress bar")
    train.add_argument(
        "--overwrite", action="store_true", help="replace a run already in the --out folder"
    )
    add_backend_argument(train)
    add_architecture_arguments(train)
    train.add_argument(
        "--d-sae",
        type=positive_int,
        default=DEFAULT_D_SAE,
        help=f"number of latents (default: {DEFAULT_D_SAE})",
    )
    train.add_argument(
        "--k",
        type=int,
        default=None,
        help=f"latents kept per token by topk, on average by batchtopk and matryoshka "
        f"(default: {DEFAULT_TOPK_K} for those three); per selected expert by moe (default: 16), "
        f"per token by the parent of hierarchical (default: 8) and by deep (default: 32)",
    )
    record_flags(train, {"d_sae": "--d-sae", "k": "--k", "eval_tokens": "--eval-tokens"})
    add_config_arguments(train, DataConfig)
    add_config_arguments(train, TrainingConfig, renames={"total_tokens": "tokens"})
    add_config_arguments(train, RemedyConfig)
    train.add_argument(
        "--activations",
        type=Path,
        default=None,
        metavar="DIR",
        help="train on the activations stored in a shard folder from 'saehooks harvest' instead "
        "of a live host; --hook-name picks the stored hook, and the shard manifest sets the "
        "model, corpus and context settings (default: live activations)",
    )
    add_sweep_arguments(train)
    add_harvest_parser(commands)

    evaluate = commands.add_parser(
        "eval", help="evaluate a saved SAE spliced into its host; writes metrics.json"
    )
    evaluate.add_argument("path", type=Path, help="a run folder from 'train' or an SAE folder")
    evaluate.add_argument(
        "--eval-tokens",
        type=int,
        default=DEFAULT_EVAL_TOKENS,
        help="held-out tokens after BOS to evaluate on, at least 2; whole contexts, the last "
        f"one or two cut short (default: {DEFAULT_EVAL_TOKENS})",
    )
    evaluate.add_argument("--corpus", default=None, help="override the corpus stored with the SAE")
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for metrics.json, report.md and the plots (default: the run folder, "
        "RUN/eval-CORPUS with --corpus, or PATH-eval beside a bare SAE folder)",
    )
    add_backend_argument(evaluate)
    record_flags(evaluate, {"eval_tokens": "--eval-tokens"})

    hooks = commands.add_parser(
        "hooks",
        help="list the hook names a model has on the chosen --backend, one per line "
        "(nnsight has only the residual stream and the attention and MLP outputs)",
    )
    hooks.add_argument(
        "model", help="'smollm2', a local Hugging Face model folder, or a hub name when online"
    )
    hooks.add_argument(
        "--filter",
        default=None,
        metavar="SUBSTRING",
        help="list only the names that contain SUBSTRING, for example resid_post",
    )
    hooks.add_argument(
        "--all",
        action="store_true",
        help="also list the hooks an SAE cannot train on, whose activation is not "
        "[batch, position, d] (attention patterns, per-head values, norm scales)",
    )
    add_backend_argument(hooks)

    pretrained = commands.add_parser("pretrained", help="the registry of pretrained dictionaries")
    # The metavar names the choices in the "required" error, which would otherwise show the dest.
    pretrained_commands = pretrained.add_subparsers(
        dest="pretrained_command", required=True, metavar="{list}"
    )
    pretrained_commands.add_parser("list", help="print the index of pretrained dictionaries")
    return parser


def add_sweep_arguments(train: argparse.ArgumentParser) -> None:
    sweep = train.add_argument_group(
        "several SAEs on one pass",
        "Each option trains one SAE per value, all on one host pass (or one shard folder), into "
        "--out/NAME, where NAME joins the hook, k<K> and d_sae<N> of the options given. Several "
        "options train every combination.",
    )
    sweep.add_argument(
        "--hook-names",
        nargs="+",
        default=None,
        metavar="HOOK",
        help="host hook points, one SAE each, in place of --hook-name",
    )
    sweep.add_argument(
        "--sweep-k",
        nargs="+",
        type=positive_int,
        default=None,
        metavar="K",
        help="values of k, one SAE each, in place of --k",
    )
    sweep.add_argument(
        "--sweep-d-sae",
        nargs="+",
        type=positive_int,
        default=None,
        metavar="N",
        help="numbers of latents, one SAE each, in place of --d-sae",
    )


def is_sweep(args: argparse.Namespace) -> bool:
    return any(values is not None for values in (args.hook_names, args.sweep_k, args.sweep_d_sae))


def check_sweep_values(args: argparse.Namespace) -> None:
    """Reject a value given twice to one sweep option, because both SAEs would share a folder.

    Hook names that differ in spelling but name one hook point are caught only after the model
    loads, by ``train_saes``.
    """
    options = {
        "--hook-names": args.hook_names,
        "--sweep-k": args.sweep_k,
        "--sweep-d-sae": args.sweep_d_sae,
    }
    for flag, values in options.items():
        repeated = [value for value, count in Counter(values or []).items() if count > 1]
        if repeated:
            raise ValueError(
                f"{flag} lists {', '.join(map(str, repeated))} more than once, but each value "
                "trains one SAE into its own folder; give every value once"
            )


def sweep_folder(args: argparse.Namespace, hook: str, k: int | None, d_sae: int) -> Path:
    """Return the run folder of one sweep SAE: ``--out`` plus the swept values, joined by '_'."""
    name = [hook] if args.hook_names else []
    name += [f"k{k}"] if args.sweep_k else []
    name += [f"d_sae{d_sae}"] if args.sweep_d_sae else []
    return args.out / "_".join(name)


def run_train_many(args: argparse.Namespace) -> int:
    from saehooks.data import ActivationShards
    from saehooks.training.multi import SAEJob, train_saes
    from saehooks.training.pipeline import activation_width, check_run_folder, load_training_host

    check_sweep_values(args)
    data_cfg, train_cfg, remedy_cfg = train_configs(args)
    # Hook names as typed; train_saes checks again with the host's spelling of each.
    for hook, k, d_sae in itertools.product(
        args.hook_names or [data_cfg.hook_name],
        args.sweep_k or [args.k],
        args.sweep_d_sae or [args.d_sae],
    ):
        check_run_folder(sweep_folder(args, hook, k, d_sae), args.overwrite)
    host = None
    if args.activations is None:
        host = load_training_host(data_cfg, backend=args.backend)
    shards = ActivationShards(args.activations) if args.activations is not None else None
    if shards is not None:
        warn_ignored_data_options(data_cfg, shards)

    jobs = []
    for hook, k, d_sae in itertools.product(
        args.hook_names or [data_cfg.hook_name],
        args.sweep_k or [args.k],
        args.sweep_d_sae or [args.d_sae],
    ):
        if shards is not None:
            width = shards.width(hook)
        else:
            assert host is not None  # loaded above for live activations
            hook = host.resolve_hook(hook)
            width = activation_width(host, hook)
        values = argparse.Namespace(**{**vars(args), "hook_name": hook, "k": k, "d_sae": d_sae})
        sae_cfg = sae_config_from_args(values, d_in=width, default_k=DEFAULT_TOPK_K)
        jobs.append(SAEJob(sae_cfg, train_cfg, sweep_folder(args, hook, k, d_sae), remedy_cfg))

    outcomes = train_saes(
        jobs,
        data_cfg,
        host=host,
        activations=args.activations,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    exit_code = 0
    for outcome in outcomes:
        exit_code = max(exit_code, report_outcome(outcome, args, data_cfg, host))
        if exit_code != 0 and not outcome.result.interrupted:
            break  # Ctrl-C stopped this SAE's evaluation, so skip the evaluation of the others
    return exit_code


def add_harvest_parser(commands: argparse._SubParsersAction) -> None:
    harvest = commands.add_parser(
        "harvest",
        help="write the training split's activations at one or more hooks to safetensors shards",
    )
    harvest.add_argument("--out", type=Path, required=True, help="shard folder to write")
    harvest.add_argument(
        "--hook-names",
        nargs="+",
        default=[DataConfig.hook_name],
        metavar="HOOK",
        help=f"host hook points to store (default: {DataConfig.hook_name})",
    )
    harvest.add_argument(
        "--tokens",
        type=positive_int,
        default=DEFAULT_HARVEST_TOKENS,
        help="activations to store per hook, BOS positions excluded when they are dropped; "
        f"whole contexts, so up to one context more (default: {DEFAULT_HARVEST_TOKENS})",
    )
    harvest.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="dtype of the stored activations, read into float32 for training (default: float32)",
    )
    harvest.add_argument(
        "--shard-tokens",
        type=positive_int,
        default=65_536,
        help="activations per hook in each shard file, rounded up to whole harvest batches "
        "(default: 65536)",
    )
    harvest.add_argument("--quiet", action="store_true", help="hide the progress bar")
    harvest.add_argument(
        "--overwrite", action="store_true", help="replace shards already in the --out folder"
    )
    add_backend_argument(harvest)
    add_config_arguments(harvest, DataConfig, skip=("hook_name", "buffer_tokens"))


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("transformer_lens", "nnsight"),
        default="transformer_lens",
        help="library that runs the host model (default: transformer_lens)",
    )


def positive_int(text: str) -> int:
    """Parse a command-line integer that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def train_configs(args: argparse.Namespace) -> tuple[DataConfig, TrainingConfig, RemedyConfig]:
    """Build the data, training and remedy configs of 'train' and check the options."""
    data_cfg = config_from_args(DataConfig, args)
    train_cfg = config_from_args(TrainingConfig, args)
    remedy_cfg = config_from_args(RemedyConfig, args)
    check_train_options(args, data_cfg, remedy_cfg)
    return data_cfg, train_cfg, remedy_cfg


def run_train(args: argparse.Namespace) -> int:
    from saehooks.training.pipeline import activation_width, load_training_host, train_sae

    data_cfg, train_cfg, remedy_cfg = train_configs(args)
    host = None
    if args.activations is None:
        host = load_training_host(data_cfg, backend=args.backend)
        width = activation_width(host, host.resolve_hook(data_cfg.hook_name))
    else:
        from saehooks.data import ActivationShards

        shards = ActivationShards(args.activations)
        warn_ignored_data_options(data_cfg, shards)
        width = shards.width(data_cfg.hook_name)
    sae_cfg = sae_config_from_args(args, d_in=width, default_k=DEFAULT_TOPK_K)

    outcome = train_sae(
        sae_cfg,
        data_cfg,
        train_cfg,
        args.out,
        host=host,
        progress=not args.quiet,
        remedy_cfg=remedy_cfg,
        overwrite=args.overwrite,
        activations=args.activations,
    )
    return report_outcome(outcome, args, data_cfg, host)


def warn_ignored_data_options(data_cfg: DataConfig, shards: ActivationShards) -> None:
    """Warn about each of --model, --corpus and --context-size that --activations overrides.

    An option counts as set when it differs from its default. The shards' values apply.
    """
    defaults = DataConfig()
    for field, flag in (
        ("model", "--model"),
        ("corpus", "--corpus"),
        ("context_size", "--context-size"),
    ):
        requested = getattr(data_cfg, field)
        stored = shards.data_settings.get(field)
        if requested != getattr(defaults, field) and requested != stored:
            logger.warning(
                "%s %s is ignored: the shards in %s were harvested with %s %s, and training on "
                "them uses that",
                flag,
                requested,
                shards.folder,
                flag,
                stored,
            )


def report_outcome(
    outcome: TrainOutcome, args: argparse.Namespace, data_cfg: DataConfig, host: Host | None
) -> int:
    """Print what training did, then evaluate the saved SAE unless --eval-tokens is 0."""
    from saehooks.evaluation.evaluate import format_table
    from saehooks.evaluation.saved_run import evaluate_saved

    state = "interrupted" if outcome.result.interrupted else "finished"
    print(
        f"training {state}: {outcome.result.steps} steps, {outcome.result.tokens:,} tokens in "
        f"{outcome.result.seconds:.0f} s; SAE saved to {outcome.sae_dir}"
    )
    if outcome.result.interrupted:
        print(f"evaluation skipped; run 'saehooks eval {outcome.run_dir}' to evaluate")
        return INTERRUPTED_EXIT_CODE
    if args.eval_tokens == 0:
        return 0
    try:
        result, metrics_path = evaluate_saved(
            outcome.run_dir,
            args.eval_tokens,
            # The SAE is evaluated in the float32 host, whatever host dtype it trained on.
            host=host if data_cfg.host_dtype == "float32" else None,
            progress=not args.quiet,
            backend=args.backend,
        )
    except KeyboardInterrupt:
        print(
            f"evaluation interrupted; the SAE is saved in {outcome.sae_dir}. Run 'saehooks eval "
            f"{outcome.run_dir}' to evaluate it",
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT_CODE
    print(format_table(result))
    print(f"metrics written to {metrics_path}")
    return 0


def check_train_options(
    args: argparse.Namespace, data_cfg: DataConfig, remedy_cfg: RemedyConfig
) -> None:
    """Validate every training option that does not need the host model, before it loads.

    Only the hook name and the activation width (the SAE's d_in) wait for the model.
    """
    from saehooks.data import load_corpus
    from saehooks.resampling.latents import latent_parameters
    from saehooks.training.pipeline import check_run_folder
    from saehooks.training.trainer import new_sae

    if args.eval_tokens < 0 or args.eval_tokens == 1:
        raise ValueError(
            f"eval_tokens={args.eval_tokens} is invalid; evaluate at least 2 tokens, or pass 0 "
            "to skip the evaluation"
        )
    check_run_folder(args.out, args.overwrite)
    load_corpus(data_cfg.corpus, data_cfg.text_field)

    if args.k is not None and args.architecture in PLAIN_WITHOUT_K:
        raise ValueError(
            f"--k applies only to --architecture {', '.join(K_ARCHITECTURES)} and the "
            f"composites, but the architecture is {args.architecture!r}; drop --k"
        )
    # d_in=1 is a placeholder for the width until the model has loaded. No SAE config rule uses
    # d_in beyond d_in >= 1, and an SAE that narrow costs next to nothing to build.
    sae_cfg = sae_config_from_args(args, d_in=1, default_k=DEFAULT_TOPK_K)
    if remedy_cfg.remedy == "none":
        return
    try:
        latent_parameters(new_sae(sae_cfg, seed=0), remedy_cfg.remedy)
    except ValueError as error:
        raise ValueError(
            f"remedy={remedy_cfg.remedy!r} cannot edit a {sae_cfg.architecture!r} SAE, because "
            "it needs one encoder column, encoder bias and decoder row per latent; use "
            "remedy='none' or another architecture"
        ) from error
    if remedy_cfg.remedy == "auxk" and remedy_cfg.k_aux > sae_cfg.d_sae:
        raise ValueError(f"k_aux={remedy_cfg.k_aux} exceeds d_sae={sae_cfg.d_sae}; lower k_aux")


def run_eval(args: argparse.Namespace) -> int:
    from saehooks.evaluation.evaluate import format_table
    from saehooks.evaluation.saved_run import evaluate_saved

    result, metrics_path = evaluate_saved(
        args.path, args.eval_tokens, corpus=args.corpus, backend=args.backend, out_dir=args.out
    )
    print(format_table(result))
    print(f"metrics written to {metrics_path}")
    print(f"report and plots written to {metrics_path.parent}")
    return 0


def run_hooks(args: argparse.Namespace) -> int:
    from saehooks.hosts import load_host
    from saehooks.hosts.base import trainable_hook_names

    host = load_host(args.model, backend=args.backend)
    all_names = host.hook_names()
    names = all_names if args.all else trainable_hook_names(host)
    if args.filter is not None:
        names = [name for name in names if args.filter in name]
    matching = [name for name in all_names if args.filter is None or args.filter in name]
    hidden = len(matching) - len(names)
    if args.filter is not None and not names:
        raise ValueError(
            f"no hook name of {host.model_name} contains {args.filter!r}; run without "
            f"--filter to list all {len(all_names)} names"
            + ("" if args.all else ", or add --all to include hooks an SAE cannot train on")
        )
    print("\n".join(names))
    if hidden:
        print(
            f"{hidden} hooks that an SAE cannot train on (activations that are not "
            "[batch, position, d], or rotary cos and sin) are not listed; --all lists them",
            file=sys.stderr,
        )
    return 0


def run_harvest(args: argparse.Namespace) -> int:
    from saehooks.data.shards import check_shard_folder
    from saehooks.training.harvest import harvest_shards
    from saehooks.training.pipeline import load_training_host

    data_cfg = config_from_args(DataConfig, args, hook_name=args.hook_names[0])
    check_shard_folder(args.out, args.overwrite)
    host = load_training_host(data_cfg, backend=args.backend)
    shards = harvest_shards(
        data_cfg,
        args.hook_names,
        args.out,
        args.tokens,
        host=host,
        dtype=args.dtype,
        shard_tokens=args.shard_tokens,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"harvested {shards.num_tokens:,} activations at each of {sorted(shards.hook_widths)} "
        f"into {len(shards.manifest['shards'])} shards in {shards.folder}"
    )
    return 0


def run_pretrained(args: argparse.Namespace) -> int:
    from saehooks.pretrained import format_index, index_path, read_index

    path = index_path()
    print(format_index(read_index(path)))
    print(f"index: {path}")
    return 0


INTERRUPTED_EXIT_CODE = 130
"""Exit code after Ctrl-C or SIGTERM: 128 + SIGINT, as shells report it."""


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Schedulers stop jobs with SIGTERM; treat it like Ctrl-C so training saves what it learned.
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "train":
            return run_train_many(args) if is_sweep(args) else run_train(args)
        if args.command == "pretrained":
            return run_pretrained(args)
        if args.command == "harvest":
            return run_harvest(args)
        if args.command == "hooks":
            return run_hooks(args)
        return run_eval(args)
    except KeyboardInterrupt:
        # Training and harvesting remove what they had not saved and keep earlier outputs.
        print("interrupted; unfinished outputs were removed and earlier ones kept", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    except (ValueError, FileNotFoundError, FileExistsError, ModuleNotFoundError) as error:
        # Messages name config fields such as total_tokens, but the user typed flags (--tokens).
        print(f"error: {name_flags(str(error), getattr(args, FLAGS_DEST, {}))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

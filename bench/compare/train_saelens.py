"""Train the benchmark SAE with SAELens; runs inside the SAELens venv, not saehooks's.

SAELens loads the local model folder through ``AutoModelForCausalLM`` (its HookedProxyLM
wrapper), which hooks the Hugging Face module ``model.layers.6``, the same activation as
``blocks.6.hook_resid_post``, and stops the forward pass after that layer. Every setting that
the workload does not fix keeps SAELens's default. The training time covers the runner's
``run()`` (harvest, training and the final save) and leaves out imports and model loading.
"""

from __future__ import annotations

import json
import time

from datasets import load_dataset
from sae_lens import (
    LanguageModelSAERunnerConfig,
    LanguageModelSAETrainingRunner,
    LoggingConfig,
    TopKTrainingSAEConfig,
)
from worker_args import worker_parser


def buffer_contexts(batch_tokens: int, context_size: int) -> int:
    """Return SAELens's ``n_batches_in_buffer``: its default of 20, or twice a batch if larger.

    SAELens 6.54 sizes its mixing buffer as ``n_batches_in_buffer * context_size`` tokens and
    raises when that is less than one training batch; the default buffer is 2,560 tokens at context
    128, less than a batch of 4,096.
    """
    return max(20, -(-2 * batch_tokens // context_size))


def main() -> None:
    parser = worker_parser(__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, required=True, help="decoder layer index")
    parser.add_argument("--d-in", type=int, required=True, help="activation width")
    args = parser.parse_args()

    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=args.d_in, d_sae=args.d_sae, k=args.k, dtype="float32"),
        model_name=args.model,
        model_class_name="AutoModelForCausalLM",
        hook_name=f"model.layers.{args.layer}",
        dataset_path=args.dataset,
        is_dataset_tokenized=False,
        streaming=False,
        context_size=args.context_size,
        training_tokens=args.tokens,
        train_batch_size_tokens=args.batch_tokens,
        n_batches_in_buffer=buffer_contexts(args.batch_tokens, args.context_size),
        device="cpu",
        dtype="float32",
        logger=LoggingConfig(log_to_wandb=False),
        checkpoint_path=None,
        output_path=str(args.out),
    )
    dataset = load_dataset("json", data_files=args.dataset, split="train")
    runner = LanguageModelSAETrainingRunner(cfg, override_dataset=dataset)

    start = time.perf_counter()
    runner.run()
    seconds = time.perf_counter() - start
    args.timing.write_text(json.dumps({"tokens": args.tokens, "seconds": seconds}) + "\n")


if __name__ == "__main__":
    main()

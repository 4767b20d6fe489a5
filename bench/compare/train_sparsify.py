"""Train the benchmark SAE with sparsify; runs inside the sparsify venv, not saehooks's.

sparsify's own command line places the model on CUDA, so this script repeats its loading steps
on the CPU. It loads ``AutoModel``, which is sparsify's choice for the default FVU loss, so the
forward pass runs all layers but no LM head. Then come ``chunk_and_tokenize``, a shuffle with
sparsify's default seed, and ``Trainer.fit``. Every setting that the workload does not fix
keeps sparsify's default. The training time covers ``fit()`` (harvest, training and the final
save) and leaves out imports, model loading and tokenisation.
"""

from __future__ import annotations

import json
import time

import torch
from datasets import load_dataset
from sparsify import SaeConfig, TrainConfig, Trainer
from sparsify.data import chunk_and_tokenize
from transformers import AutoModel, AutoTokenizer
from worker_args import worker_parser

SHUFFLE_SEED = 42
"""sparsify's default ``--shuffle_seed``."""
RUN_NAME = "run"


def main() -> None:
    parser = worker_parser(__doc__.splitlines()[0])
    parser.add_argument("--hookpoint", required=True, help="module path, such as layers.6")
    args = parser.parse_args()

    model = AutoModel.from_pretrained(args.model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dataset = load_dataset("json", data_files=args.dataset, split="train")
    dataset = chunk_and_tokenize(dataset, tokenizer, max_seq_len=args.context_size, num_proc=1)
    dataset = dataset.shuffle(SHUFFLE_SEED).with_format("torch")
    n_contexts = args.tokens // args.context_size
    if len(dataset) < n_contexts:
        raise SystemExit(
            f"the dataset contains {len(dataset)} contexts of {args.context_size} tokens, fewer "
            f"than the {n_contexts} that {args.tokens} training tokens need; lower --tokens"
        )
    dataset = dataset.select(range(n_contexts))

    cfg = TrainConfig(
        SaeConfig(k=args.k, num_latents=args.d_sae),
        batch_size=args.batch_tokens // args.context_size,
        hookpoints=[args.hookpoint],
        log_to_wandb=False,
        save_dir=str(args.out),
        run_name=RUN_NAME,
    )
    trainer = Trainer(cfg, dataset, model)

    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    args.timing.write_text(json.dumps({"tokens": args.tokens, "seconds": seconds}) + "\n")


if __name__ == "__main__":
    main()

"""Activation shards on a tiny real host: harvest, read back, train, and every rejected folder."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saehooks.cli import main
from saehooks.data import ActivationShards, ShardWriter
from saehooks.hosts import TransformerLensHost
from saehooks.io import load_sae
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.harvest import harvest_shards
from saehooks.training.multi import SAEJob, train_saes
from saehooks.training.pipeline import token_stream, train_sae

HOOK = "blocks.1.hook_resid_post"
DEEPER_HOOK = "blocks.2.hook_resid_post"
TRAIN_TOKENS = 1600
# The buffer may read up to one capacity beyond the budget before training stops, and a shard
# run equals a live run only when the shards hold those activations too.
HARVEST_TOKENS = 2400


@pytest.fixture(scope="module")
def word_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .jsonl corpus of 400 documents in the tiny model's vocabulary (w0 .. w60)."""
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(5, 40, (400,), generator=generator)
    documents = []
    for length in lengths.tolist():
        words = torch.randint(0, 61, (length,), generator=generator).tolist()
        documents.append(json.dumps({"text": " ".join(f"w{word}" for word in words)}))
    path = tmp_path_factory.mktemp("corpus") / "documents.jsonl"
    path.write_text("\n".join(documents) + "\n")
    return path


@pytest.fixture(scope="module")
def data_cfg(tiny_model_dir: Path, word_corpus: Path) -> DataConfig:
    return DataConfig(
        model=str(tiny_model_dir),
        hook_name=HOOK,
        corpus=str(word_corpus),
        context_size=16,
        harvest_batch_size=4,
        buffer_tokens=256,
        eval_fraction=0.2,
    )


@pytest.fixture(scope="module")
def shard_dir(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    harvest_shards(
        data_cfg,
        [HOOK, DEEPER_HOOK],
        folder,
        HARVEST_TOKENS,
        host=tiny_host,
        shard_tokens=500,
        overwrite=True,
        progress=False,
    )
    return folder


def train_cfg(**changes: object) -> TrainingConfig:
    values: dict[str, object] = {
        "total_tokens": TRAIN_TOKENS,
        "batch_size": 32,
        "lr": 3e-3,
        "lr_warmup_steps": 5,
    }
    values.update(changes)
    return TrainingConfig(**values)  # type: ignore[arg-type]  # test helper forwards keywords


def sae_weights(sae_dir: Path) -> dict[str, torch.Tensor]:
    return load_sae(sae_dir).state_dict()


def assert_same_weights(left: Path, right: Path) -> None:
    left_weights, right_weights = sae_weights(left), sae_weights(right)
    assert left_weights.keys() == right_weights.keys()
    for name in left_weights:
        assert torch.equal(left_weights[name], right_weights[name]), name


def test_manifest_records_the_harvest(shard_dir: Path, data_cfg: DataConfig) -> None:
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    # 15 activations per 16-token context after BOS; 2400 needs 160 whole contexts.
    assert manifest["num_tokens"] == 2400
    assert manifest["num_contexts"] == 160
    assert manifest["hooks"] == {HOOK: 32, DEEPER_HOOK: 32}
    assert manifest["dtype"] == "float32"
    assert manifest["context_size"] == 16
    assert manifest["drop_bos"] is True
    assert manifest["data"]["corpus"] == data_cfg.corpus
    assert manifest["data"]["shuffle_seed"] == 0
    # Shards close on the first whole batch of 4 contexts (60 rows) at or past 500 rows.
    assert [shard["num_tokens"] for shard in manifest["shards"]] == [540, 540, 540, 540, 240]
    assert not list(shard_dir.glob(".*tmp"))


def test_shards_equal_live_harvest(
    shard_dir: Path, tiny_host: TransformerLensHost, data_cfg: DataConfig
) -> None:
    shards = ActivationShards(shard_dir)
    token_ids = torch.cat(list(shards.token_ids()))  # [160, 16]
    live_batches = list(token_stream(data_cfg, tiny_host).batches("train", 4))
    live_tokens = torch.cat(live_batches)[:160]
    assert torch.equal(token_ids, live_tokens)
    assert bool((token_ids[:, 0] == tiny_host.bos_token_id).all())

    for hook in (HOOK, DEEPER_HOOK):
        chunks = list(shards.chunks(hook, chunk_tokens=7))
        assert max(chunk.shape[0] for chunk in chunks) == 7
        stored = torch.cat(chunks)  # [2400, 32]
        live = torch.cat(
            [
                tiny_host.harvest(tokens, [hook])[hook][:, 1:].reshape(-1, 32)
                for tokens in live_batches[:40]
            ]
        )
        assert stored.shape == (2400, 32)
        assert torch.equal(stored, live), hook


def test_bfloat16_shards_store_rounded_acts(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, shard_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shards"
    harvest_shards(data_cfg, [HOOK], folder, 300, host=tiny_host, dtype="bfloat16", progress=False)
    half = torch.cat(list(ActivationShards(folder).chunks(HOOK)))
    full = torch.cat(list(ActivationShards(shard_dir).chunks(HOOK)))[:300]
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, full.to(torch.bfloat16))

    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4)
    outcome = train_sae(
        sae_cfg,
        data_cfg,
        train_cfg(total_tokens=256),
        tmp_path / "run",
        progress=False,
        activations=folder,
    )
    assert outcome.result.steps == 8
    assert load_sae(outcome.sae_dir).W_dec.dtype == torch.float32


def test_shard_training_equals_live_training(
    shard_dir: Path, tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4)
    live = train_sae(sae_cfg, data_cfg, train_cfg(), tmp_path / "live", tiny_host, progress=False)
    stored = train_sae(
        sae_cfg, data_cfg, train_cfg(), tmp_path / "shards", progress=False, activations=shard_dir
    )
    assert stored.result.steps == live.result.steps == 50
    assert_same_weights(live.sae_dir, stored.sae_dir)
    live_lines = (tmp_path / "live" / "train_metrics.jsonl").read_text().splitlines()
    stored_lines = (tmp_path / "shards" / "train_metrics.jsonl").read_text().splitlines()
    assert json.loads(live_lines[-1])["loss/mse"] == json.loads(stored_lines[-1])["loss/mse"]

    run = json.loads((tmp_path / "shards" / "run.json").read_text())
    assert run["activations"] == str(shard_dir)
    assert run["data"]["corpus"] == data_cfg.corpus
    assert load_sae(stored.sae_dir).cfg.model_name == tiny_host.model_name


def test_many_saes_match_training_alone(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    jobs = [
        SAEJob(SAEConfig(d_in=32, d_sae=64, k=4, hook_name=HOOK), train_cfg(), tmp_path / "k4"),
        SAEJob(SAEConfig(d_in=32, d_sae=96, k=8, hook_name=HOOK), train_cfg(), tmp_path / "k8"),
        # Same hook and seed as the two above, but stops after 30 of their 50 steps.
        SAEJob(
            SAEConfig(d_in=32, d_sae=64, k=2, hook_name=HOOK),
            train_cfg(total_tokens=960),
            tmp_path / "short",
        ),
        SAEJob(
            SAEConfig(d_in=32, d_sae=64, k=4, hook_name=DEEPER_HOOK),
            train_cfg(seed=1, batch_size=48, total_tokens=960),
            tmp_path / "deeper",
        ),
    ]
    outcomes = train_saes(jobs, data_cfg, host=tiny_host, progress=False)
    assert [outcome.run_dir for outcome in outcomes] == [job.out_dir for job in jobs]
    assert [outcome.result.steps for outcome in outcomes] == [50, 50, 30, 20]

    for job, outcome in zip(jobs, outcomes, strict=True):
        hook_data_cfg = DataConfig(**{**data_cfg.__dict__, "hook_name": job.sae_cfg.hook_name})
        alone = train_sae(
            job.sae_cfg,
            hook_data_cfg,
            job.train_cfg,
            tmp_path / f"alone-{Path(job.out_dir).name}",
            tiny_host,
            progress=False,
        )
        assert_same_weights(alone.sae_dir, outcome.sae_dir)


def test_many_saes_from_shards(shard_dir: Path, data_cfg: DataConfig, tmp_path: Path) -> None:
    jobs = [
        SAEJob(SAEConfig(d_in=32, d_sae=64, k=4, hook_name=HOOK), train_cfg(), tmp_path / "a"),
        SAEJob(
            SAEConfig(d_in=32, d_sae=64, k=4, hook_name=DEEPER_HOOK), train_cfg(), tmp_path / "b"
        ),
    ]
    outcomes = train_saes(jobs, data_cfg, activations=shard_dir, progress=False)
    for job, outcome in zip(jobs, outcomes, strict=True):
        hook_data_cfg = DataConfig(**{**data_cfg.__dict__, "hook_name": job.sae_cfg.hook_name})
        alone = train_sae(
            job.sae_cfg,
            hook_data_cfg,
            job.train_cfg,
            tmp_path / f"alone-{Path(job.out_dir).name}",
            progress=False,
            activations=shard_dir,
        )
        assert_same_weights(alone.sae_dir, outcome.sae_dir)


def test_harvest_stops_at_split_end(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    harvest_shards(data_cfg, [HOOK], tmp_path, 10**6, host=tiny_host, progress=False)
    shards = ActivationShards(tmp_path)
    contexts = sum(1 for _ in token_stream(data_cfg, tiny_host).contexts("train"))
    assert shards.manifest["num_contexts"] == contexts
    assert shards.num_tokens == contexts * 15


def test_jobs_need_distinct_folders(shard_dir: Path, tmp_path: Path) -> None:
    job = SAEJob(SAEConfig(d_in=32, d_sae=64, k=4, hook_name=HOOK), train_cfg(), tmp_path)
    with pytest.raises(ValueError, match="its own out_dir"):
        train_saes([job, job], activations=shard_dir, progress=False)


@pytest.mark.parametrize(
    ("sae_cfg", "budget", "message"),
    [
        (
            SAEConfig(d_in=32, d_sae=64, k=4, hook_name="blocks.3.hook_resid_post"),
            TRAIN_TOKENS,
            r"no activations at 'blocks\.3\.hook_resid_post', only at \['blocks\.1",
        ),
        (SAEConfig(d_in=48, d_sae=64, k=4, hook_name=HOOK), TRAIN_TOKENS, "set d_in=32"),
        (
            SAEConfig(d_in=32, d_sae=64, k=4, hook_name=HOOK, model_name="other/model"),
            TRAIN_TOKENS,
            "model_name='other/model'.*were harvested from",
        ),
        (
            SAEConfig(d_in=32, d_sae=64, k=4, hook_name=HOOK),
            5000,
            "total_tokens=5000 exceeds the 2400 activations.*harvest --tokens 5000",
        ),
        (SAEConfig(d_in=32, d_sae=64, k=4), TRAIN_TOKENS, "has no hook_name"),
    ],
    ids=["hook", "d_in", "model", "too-few-tokens", "no-hook"],
)
def test_mismatched_shards_raise(
    shard_dir: Path, tmp_path: Path, sae_cfg: SAEConfig, budget: int, message: str
) -> None:
    job = SAEJob(sae_cfg, train_cfg(total_tokens=budget), tmp_path / "run")
    with pytest.raises(ValueError, match=message):
        train_saes([job], activations=shard_dir, progress=False)
    assert not (tmp_path / "run").exists()


def copy_shards(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_missing_shard_raises(shard_dir: Path, tmp_path: Path) -> None:
    folder = copy_shards(shard_dir, tmp_path / "copy")
    (folder / "shard-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-00002\.safetensors .* is missing"):
        ActivationShards(folder)


def test_truncated_shard_raises(shard_dir: Path, tmp_path: Path) -> None:
    folder = copy_shards(shard_dir, tmp_path / "copy")
    shard = folder / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"shard-00001\.safetensors is truncated or corrupt"):
        ActivationShards(folder)


def test_shard_of_another_harvest_raises(shard_dir: Path, tmp_path: Path) -> None:
    folder = copy_shards(shard_dir, tmp_path / "copy")
    (folder / "shard-00001.safetensors").write_bytes(
        (folder / "shard-00004.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="but the manifest expects"):
        ActivationShards(folder)


def test_folder_without_manifest_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="saehooks harvest --out"):
        ActivationShards(tmp_path)


def test_harvest_needs_overwrite(
    shard_dir: Path, tiny_host: TransformerLensHost, data_cfg: DataConfig
) -> None:
    with pytest.raises(FileExistsError, match="--overwrite"):
        harvest_shards(data_cfg, [HOOK], shard_dir, 100, host=tiny_host, progress=False)
    assert ActivationShards(shard_dir).num_tokens == HARVEST_TOKENS


def test_cli_harvest_then_train(
    tiny_model_dir: Path, word_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = tmp_path / "shards"
    common = ["--model", str(tiny_model_dir), "--corpus", str(word_corpus)]
    harvested = main(
        ["harvest", "--out", str(shards), "--hook-names", HOOK, DEEPER_HOOK, "--tokens", "900"]
        + common
        + ["--context-size", "16", "--eval-fraction", "0.2", "--quiet"]
    )
    assert harvested == 0
    assert "harvested 900 activations" in capsys.readouterr().out

    trained = main(
        ["train", "--activations", str(shards), "--hook-name", DEEPER_HOOK, "--out"]
        + [str(tmp_path / "run"), "--tokens", "640", "--batch-size", "32", "--d-sae", "64"]
        + ["--k", "4", "--buffer-tokens", "256", "--eval-tokens", "0", "--quiet"]
    )
    assert trained == 0
    sae = load_sae(tmp_path / "run" / "sae")
    assert sae.cfg.hook_name == DEEPER_HOOK
    assert sae.cfg.d_in == 32

    failed = main(
        ["train", "--activations", str(shards), "--out", str(tmp_path / "other")]
        + ["--hook-name", "blocks.0.hook_resid_post", "--quiet"]
    )
    assert failed == 2
    assert "blocks.0.hook_resid_post" in capsys.readouterr().err


def test_cli_sweep_on_one_pass(
    tiny_model_dir: Path, word_corpus: Path, shard_dir: Path, tmp_path: Path
) -> None:
    live = main(
        ["train", "--model", str(tiny_model_dir), "--corpus", str(word_corpus)]
        + ["--context-size", "16", "--eval-fraction", "0.2", "--buffer-tokens", "256"]
        + ["--hook-names", HOOK, DEEPER_HOOK, "--sweep-k", "2", "4", "--d-sae", "64"]
        + ["--tokens", "320", "--batch-size", "32", "--eval-tokens", "0", "--quiet"]
        + ["--out", str(tmp_path / "live")]
    )
    assert live == 0
    for hook in (HOOK, DEEPER_HOOK):
        for k in (2, 4):
            sae = load_sae(tmp_path / "live" / f"{hook}_k{k}" / "sae")
            assert sae.cfg.hook_name == hook
            assert sae.cfg.k == k

    stored = main(
        ["train", "--activations", str(shard_dir), "--hook-name", DEEPER_HOOK]
        + ["--sweep-d-sae", "48", "64", "--k", "4", "--tokens", "320", "--batch-size", "32"]
        + ["--buffer-tokens", "256", "--eval-tokens", "0", "--quiet"]
        + ["--out", str(tmp_path / "stored")]
    )
    assert stored == 0
    assert sorted(path.name for path in (tmp_path / "stored").iterdir()) == [
        "d_sae48",
        "d_sae64",
    ]
    assert load_sae(tmp_path / "stored" / "d_sae48" / "sae").cfg.d_sae == 48


def test_cli_sweep_stops_cleanly_on_sigterm(
    tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "saehooks.cli", "train", "--model", str(tiny_model_dir)]
    command += ["--corpus", str(word_corpus), "--hook-name", HOOK, "--context-size", "16"]
    command += ["--eval-fraction", "0.2", "--buffer-tokens", "256", "--batch-size", "32"]
    command += ["--d-sae", "64", "--sweep-k", "2", "4", "--tokens", "100000000", "--quiet"]
    command += ["--out", str(tmp_path)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    metrics_paths = [tmp_path / name / "train_metrics.jsonl" for name in ("k2", "k4")]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if all(
            path.exists() and len(path.read_text().splitlines()) >= 20 for path in metrics_paths
        ):
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert stdout.count("training interrupted") == 2
    for path in metrics_paths:
        steps = len(path.read_text().splitlines())
        run = json.loads((path.parent / "run.json").read_text())
        assert run["result"]["steps"] == steps
        assert run["result"]["interrupted"] is True


def small_harvest(host: TransformerLensHost, data_cfg: DataConfig, folder: Path) -> None:
    """Harvest 300 tokens at ``HOOK`` into ``folder`` in shards of about 100 rows."""
    harvest_shards(
        data_cfg, [HOOK], folder, 300, host=host, shard_tokens=100, overwrite=True, progress=False
    )


def harvest_contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_failed_overwrite_keeps_old_harvest(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "shards"
    small_harvest(tiny_host, data_cfg, folder)
    before = harvest_contents(folder)

    # Every document is shorter than one context, so the new harvest fails after the model ran.
    short_corpus = tmp_path / "short"
    short_corpus.mkdir()
    for index in range(5):
        (short_corpus / f"doc{index}.txt").write_text("w1 w2")
    short_cfg = dataclasses.replace(data_cfg, corpus=str(short_corpus))
    with pytest.raises(ValueError, match="stored no activations"):
        harvest_shards(
            short_cfg, [HOOK], folder, 300, host=tiny_host, overwrite=True, progress=False
        )

    assert harvest_contents(folder) == before
    assert sorted(path.name for path in folder.iterdir()) == sorted(before)
    assert ActivationShards(folder).num_tokens == 300


def test_aborted_overwrite_keeps_old_harvest(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "shards"
    small_harvest(tiny_host, data_cfg, folder)
    before = harvest_contents(folder)

    writer = ShardWriter(
        folder,
        model_name="tiny",
        hook_widths={HOOK: 4},
        context_size=3,
        drop_bos=False,
        data_settings={},
        shard_tokens=3,
        overwrite=True,
    )
    writer.add(torch.zeros(2, 3, dtype=torch.int64), {HOOK: torch.ones(6, 4)})
    writer.abort()

    assert harvest_contents(folder) == before
    assert sorted(path.name for path in folder.iterdir()) == sorted(before)


def test_aborted_first_harvest_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "shards"
    writer = ShardWriter(
        folder,
        model_name="tiny",
        hook_widths={HOOK: 4},
        context_size=3,
        drop_bos=False,
        data_settings={},
        shard_tokens=3,
    )
    writer.add(torch.zeros(2, 3, dtype=torch.int64), {HOOK: torch.ones(6, 4)})
    writer.abort()

    assert not folder.exists()


def test_killed_harvest_swap_restores_old(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "shards"
    small_harvest(tiny_host, data_cfg, folder)
    before = harvest_contents(folder)
    # What a SIGKILL in the middle of the final swap leaves: the old harvest moved aside, one
    # new shard in place and no manifest.
    previous = folder / ".previous-harvest"
    previous.mkdir()
    for name in before:
        os.replace(folder / name, previous / name)
    (folder / "shard-00000.safetensors").write_bytes(b"partial")

    with pytest.raises(FileExistsError, match="--overwrite"):
        small_harvest_without_overwrite(tiny_host, data_cfg, folder)

    assert harvest_contents(folder) == before
    assert not previous.exists()


def small_harvest_without_overwrite(
    host: TransformerLensHost, data_cfg: DataConfig, folder: Path
) -> None:
    harvest_shards(data_cfg, [HOOK], folder, 300, host=host, progress=False)


def test_shard_files_get_umask_mode(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "shards"
    old_umask = os.umask(0o027)
    try:
        small_harvest(tiny_host, data_cfg, folder)
    finally:
        os.umask(old_umask)

    shard_files = sorted(folder.glob("shard-*.safetensors"))
    assert len(shard_files) == 3
    for path in [*shard_files, folder / "manifest.json"]:
        assert path.stat().st_mode & 0o777 == 0o640, path.name


def test_cli_interrupted_harvest_keeps_old(
    tiny_host: TransformerLensHost, data_cfg: DataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "shards"
    small_harvest(tiny_host, data_cfg, folder)
    before = harvest_contents(folder)
    # 3000 documents of 200 words: about 37,000 contexts, far more than harvest before the signal.
    generator = torch.Generator().manual_seed(5)
    words = torch.randint(0, 61, (3000, 200), generator=generator).tolist()
    big_corpus = tmp_path / "big.txt"
    big_corpus.write_text("\n\n".join(" ".join(f"w{word}" for word in doc) for doc in words))

    command = [sys.executable, "-m", "saehooks.cli", "harvest", "--out", str(folder)]
    command += ["--model", data_cfg.model, "--corpus", str(big_corpus), "--hook-names", HOOK]
    command += ["--context-size", "16", "--harvest-batch-size", "1", "--shard-tokens", "100"]
    command += ["--tokens", "100000000", "--overwrite", "--quiet"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    staged_shard = folder / ".harvest-in-progress" / "shard-00001.safetensors"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not staged_shard.exists():
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted;")
    assert harvest_contents(folder) == before
    assert sorted(path.name for path in folder.iterdir()) == sorted(before)


def test_cli_harvest_checks_folder_first(
    shard_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model path does not exist, so only a check made before loading it can report the folder.
    missing_model = tmp_path / "no-such-model"
    exit_code = main(
        ["harvest", "--out", str(shard_dir), "--model", str(missing_model)]
        + ["--hook-names", HOOK, "--tokens", "100", "--quiet"]
    )
    stderr = capsys.readouterr().err
    assert exit_code == 2
    assert "already contains activation shards" in stderr
    assert "--overwrite" in stderr


def test_short_read_ahead_warns(
    shard_dir: Path, data_cfg: DataConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4, hook_name=HOOK)
    # 2400 stored activations in batches of 64: a budget of 2368 takes 37 whole batches, and
    # one of 2369 takes 38, 2432 activations.
    for budget, warns in ((2368, False), (2369, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="saehooks.training.multi"):
            train_sae(
                sae_cfg,
                data_cfg,
                train_cfg(total_tokens=budget, batch_size=64),
                tmp_path / str(budget),
                progress=False,
                activations=shard_dir,
            )
        messages = [record.getMessage() for record in caplog.records]
        short = [message for message in messages if "whole last batch of 64" in message]
        assert len(short) == int(warns), (budget, messages)
        if warns:
            assert "harvest at least 2432 tokens" in short[0]


def test_cli_ignored_data_options_warn(
    shard_dir: Path, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    common = ["--activations", str(shard_dir), "--hook-name", HOOK, "--tokens", "640"]
    common += ["--batch-size", "32", "--d-sae", "64", "--k", "4", "--buffer-tokens", "256"]
    common += ["--eval-tokens", "0", "--quiet", "--model", str(tiny_model_dir)]
    for sweep in ([], ["--sweep-k", "4"]):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="saehooks.cli"):
            exit_code = main(
                ["train", "--out", str(tmp_path / f"run{len(sweep)}"), *common, *sweep]
                + ["--context-size", "32", "--corpus", "wiki"]
            )
        messages = [record.getMessage() for record in caplog.records]
        assert exit_code == 0
        assert any("--context-size 32 is ignored" in message for message in messages), messages
        assert any("with --context-size 16" in message for message in messages), messages
        # --corpus wiki is the default, so it counts as not given; --model matches the shards.
        assert not any("--corpus" in message for message in messages), messages
        assert not any("--model" in message for message in messages), messages


def test_cli_sweep_checks_folders_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k4").mkdir()
    (tmp_path / "k4" / "run.json").write_text("{}")
    # The model path does not exist, so only a check made before loading it can report k4.
    exit_code = main(
        ["train", "--out", str(tmp_path), "--model", str(tmp_path / "no-such-model")]
        + ["--sweep-k", "2", "4", "--tokens", "64", "--batch-size", "32", "--quiet"]
    )
    stderr = capsys.readouterr().err
    assert exit_code == 2
    assert f"{tmp_path / 'k4'} already holds a training run" in stderr

"""The side-by-side benchmark's parts, on real files, real child processes and a tiny host."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "compare"))

import report  # noqa: E402  (the benchmark folder is not a package; its path is added above)
import venvs  # noqa: E402
from children import run_child  # noqa: E402
from library_runs import remove_outputs, saehooks_command, train_foreign  # noqa: E402
from limit import measure_limit, pipeline_limit  # noqa: E402
from scoring import score  # noqa: E402
from workload import FULL, SAEHOOKS_DEFAULT_FLAGS, SAEHOOKS_FP32_FLAGS, Workload  # noqa: E402

from saehooks.cli import build_parser  # noqa: E402
from saehooks.hosts import TransformerLensHost  # noqa: E402
from saehooks.io import load_folder  # noqa: E402

TINY_HOOK = "blocks.1.hook_resid_post"


def test_pipeline_limit_hand_computed() -> None:
    # 3,300 tokens/s harvest and a 0.84 s step on 4,096 tokens: 1 / (1/3300 + 0.84/4096).
    limit = pipeline_limit(3300.0, 4096 / 0.84)
    assert limit == pytest.approx(1968.08, abs=0.01)


def test_pipeline_limit_rejects_zero_speed() -> None:
    with pytest.raises(ValueError, match="harvest speed 0.0 tokens/s must be positive"):
        pipeline_limit(0.0, 100.0)


def test_workload_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="smaller than one batch"):
        Workload(train_tokens=100, eval_tokens=256)
    with pytest.raises(ValueError, match="multiple of context_size=128"):
        Workload(train_tokens=8192, eval_tokens=256, batch_tokens=4000)
    with pytest.raises(ValueError, match="less than one context"):
        Workload(train_tokens=8192, eval_tokens=100)


def test_full_workload_matches_record() -> None:
    assert FULL.train_tokens == 1_000_000
    assert FULL.batch_tokens == 4096
    assert (FULL.k, FULL.d_sae, FULL.context_size) == (32, 4608, 128)
    assert FULL.batch_contexts == 32


@pytest.mark.parametrize("flags", [SAEHOOKS_FP32_FLAGS, SAEHOOKS_DEFAULT_FLAGS])
def test_saehooks_command_parses(tmp_path: Path, flags: tuple[str, ...]) -> None:
    command = saehooks_command(FULL, tmp_path / "run", flags)
    assert command[1:4] == ["-m", "saehooks.cli", "train"]
    args = build_parser().parse_args(command[3:])
    assert args.total_tokens == 1_000_000
    assert args.batch_size == 4096
    assert args.d_sae == 4608
    assert args.k == 32
    assert args.hook_name == "blocks.6.hook_resid_post"
    assert args.architecture == "topk"
    assert args.eval_tokens == 0
    if flags == SAEHOOKS_FP32_FLAGS:
        assert args.host_dtype == "float32"
        assert args.dtype == "float32"


def test_child_peak_rss_counts_child(tmp_path: Path) -> None:
    # The child touches 300 MB, so its peak RSS is at least that, whatever this process uses.
    code = "b = bytearray(300_000_000); b[::4096] = b'x' * len(b[::4096]); print('done')"
    child = run_child([sys.executable, "-c", code], tmp_path / "child.log")
    assert child.peak_rss_gb > 0.3
    assert child.peak_rss_gb < 1.0
    assert (tmp_path / "child.log").read_text().strip() == "done"


def test_failed_child_raises_with_log(tmp_path: Path) -> None:
    code = "import sys; print('broken input'); sys.exit(3)"
    with pytest.raises(RuntimeError, match=r"exited with status 3; see .*child\.log") as error:
        run_child([sys.executable, "-c", code], tmp_path / "child.log")
    assert "broken input" in str(error.value)


def test_venv_with_matching_stamp_is_reused(tmp_path: Path) -> None:
    folder = tmp_path / "sparsify"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    (folder / venvs.STAMP_FILENAME).write_text(venvs.expected_stamp("sparsify"))
    assert venvs.venv_python("sparsify", root=tmp_path) == folder / "bin" / "python"


def test_venv_stamp_lists_pins() -> None:
    stamp = venvs.expected_stamp("saelens").splitlines()
    assert stamp[0].startswith("python 3.")
    assert stamp[1:] == ["torch==2.13.0", "sae-lens==6.54.12"]
    with pytest.raises(ValueError, match="unknown benchmark venv 'nope'"):
        venvs.expected_stamp("nope")


def runs_of(speeds: dict[str, float]) -> dict[str, dict[str, float]]:
    return {
        name: {"tokens_per_s": speed, "peak_rss_gb": 1.5, "fvu": 0.25, "l0": 32.0,
               "ce_loss_recovered": 0.9}
        for name, speed in speeds.items()
    }  # fmt: skip


def test_comparison_has_issue_keys() -> None:
    speeds = {"saelens": 1000.0, "sparsify": 500.0, "saehooks_fp32": 1500.0,
              "saehooks_default": 2000.0}  # fmt: skip
    values = report.comparison(runs_of(speeds), 1800.0, {"mode": "short"})
    assert list(values) == [*report.RUN_NAMES, "limit_tokens_per_s", "details"]
    for name in report.RUN_NAMES:
        assert list(values[name]) == list(report.RUN_KEYS)
    assert values["limit_tokens_per_s"] == 1800.0


def test_comparison_rejects_missing_run() -> None:
    speeds = {"saelens": 1000.0, "sparsify": 500.0, "saehooks_fp32": 1500.0}
    with pytest.raises(ValueError, match=r"runs \['saehooks_default'\] are missing"):
        report.comparison(runs_of(speeds), 1800.0, {})


def test_comparison_rejects_extra_key() -> None:
    speeds = {"saelens": 1.0, "sparsify": 1.0, "saehooks_fp32": 1.0, "saehooks_default": 1.0}
    runs = runs_of(speeds)
    runs["sparsify"]["kl_div"] = 0.1
    with pytest.raises(ValueError, match="run 'sparsify' has keys"):
        report.comparison(runs, 1.0, {})


def test_markdown_table_ratios() -> None:
    speeds = {"saelens": 1000.0, "sparsify": 500.0, "saehooks_fp32": 1500.0,
              "saehooks_default": 2000.0}  # fmt: skip
    table = report.markdown_table(report.comparison(runs_of(speeds), 2000.0, {}))
    rows = table.splitlines()
    assert len(rows) == 6
    assert rows[4] == "| saehooks, fp32 | 1,500 | 1.50 | 75% | 1.50 | 0.250 | 32.0 | 0.900 |"
    assert rows[5].startswith("| saehooks, defaults | 2,000 | 2.00 | 100% |")


def test_section_appended_then_replaced() -> None:
    document = "# Benchmarks\n\nOlder text.\n"
    first = report.replace_section(document, "table one")
    assert first.startswith(document)
    assert first.count(report.SECTION_HEADING) == 1
    assert "table one" in first

    second = report.replace_section(first + "\n## Later section\n", "table two")
    assert "table one" not in second
    assert "table two" in second
    assert second.count(report.SECTION_HEADING) == 1
    assert second.endswith("## Later section\n")


def test_section_with_one_marker_raises() -> None:
    with pytest.raises(ValueError, match="or neither"):
        report.replace_section(f"text\n{report.SECTION_END}\n", "table")


def test_json_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "results" / "compare.json"
    report.write_json(path, {"limit_tokens_per_s": 1.5})
    assert json.loads(path.read_text()) == {"limit_tokens_per_s": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["compare.json"]


@pytest.fixture()
def tiny_corpus(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(3)
    lines = []
    for _ in range(200):
        words = torch.randint(0, 61, (40,), generator=generator).tolist()
        lines.append(" ".join(f"w{i}" for i in words))
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    return path


def test_measure_limit_on_tiny_host(tiny_host: TransformerLensHost, tiny_corpus: Path) -> None:
    workload = Workload(train_tokens=256, eval_tokens=16, batch_tokens=128, context_size=16,
                        k=4, d_sae=64)  # fmt: skip
    limit = measure_limit(tiny_host, workload, 2, 3, hook_name=TINY_HOOK, corpus=str(tiny_corpus))
    assert limit.harvest_tokens_per_s > 0
    assert limit.step_tokens_per_s > 0
    expected = 1 / (1 / limit.harvest_tokens_per_s + 1 / limit.step_tokens_per_s)
    assert limit.limit_tokens_per_s == pytest.approx(expected)


def test_measure_limit_short_corpus_raises(
    tiny_host: TransformerLensHost, tiny_corpus: Path
) -> None:
    workload = Workload(train_tokens=256, eval_tokens=16, batch_tokens=128, context_size=16)
    with pytest.raises(ValueError, match="fewer than the 1001 the measurement needs"):
        measure_limit(tiny_host, workload, 1000, 1, hook_name=TINY_HOOK, corpus=str(tiny_corpus))


def test_score_reads_sparsify_folder(tiny_host: TransformerLensHost, tmp_path: Path) -> None:
    # A sparsify SAE whose decoder is zero reconstructs zeros, so the spliced loss equals the
    # zero-ablated loss and no CE loss is recovered. Its hook comes from score, not the folder.
    d_in, d_sae, k = 32, 48, 4
    folder = tmp_path / "run" / "layers.1"
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(
        json.dumps({"activation": "topk", "num_latents": d_sae, "k": k, "d_in": d_in})
    )
    generator = torch.Generator().manual_seed(4)
    tensors = {
        "encoder.weight": torch.randn(d_sae, d_in, generator=generator),
        "encoder.bias": torch.full((d_sae,), 50.0),
        "W_dec": torch.zeros(d_sae, d_in),
        "b_dec": torch.zeros(d_in),
    }
    save_file(tensors, str(folder / "sae.safetensors"))
    batches = [torch.randint(3, 64, (4, 12), generator=generator) for _ in range(2)]
    for batch in batches:
        batch[:, 0] = tiny_host.bos_token_id

    result = score(tiny_host, folder, batches, hook_name=TINY_HOOK)
    assert result.ce_loss_spliced == pytest.approx(result.ce_loss_zero, abs=1e-5)
    assert result.ce_loss_recovered == pytest.approx(0.0, abs=1e-4)
    assert result.l0 == pytest.approx(k)
    assert result.n_tokens == 2 * 4 * 11


def test_remove_outputs_clears_earlier_run(tmp_path: Path) -> None:
    folder = tmp_path / "sparsify" / "run" / "layers.6"
    folder.mkdir(parents=True)
    (folder / "sae.safetensors").write_text("stale")
    timing = tmp_path / "sparsify-timing.json"
    timing.write_text("{}")
    remove_outputs(tmp_path / "sparsify", timing, tmp_path / "never-written.json")
    assert not (tmp_path / "sparsify").exists()
    assert not timing.exists()


FOREIGN_ARGS = {
    "saelens": (("--layer", "1", "--d-in", "32"), Path()),
    "sparsify": (("--hookpoint", "layers.1"), Path("run", "layers.1")),
}


@pytest.mark.parametrize("name", sorted(FOREIGN_ARGS))
def test_foreign_library_trains_tiny_model(
    name: str, tiny_model_dir: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    folder = venvs.venv_root() / name
    stamp = folder / venvs.STAMP_FILENAME
    if not stamp.is_file() or stamp.read_text() != venvs.expected_stamp(name):
        pytest.skip(f"the {name} venv is not built; 'bench/compare --short' builds it")

    workload = Workload(train_tokens=256, eval_tokens=16, batch_tokens=128, context_size=16,
                        k=4, d_sae=64)  # fmt: skip
    extra_args, sae_subfolder = FOREIGN_ARGS[name]
    run = train_foreign(
        name, workload, tiny_model_dir, tiny_corpus, tmp_path, extra_args, sae_subfolder
    )
    assert run.tokens == 256
    assert run.peak_rss_gb > 0.1
    assert run.wall_seconds >= run.train_seconds

    sae = load_folder(run.sae_folder, hook_name=TINY_HOOK, dtype="float32")
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k) == (32, 64, 4)
    assert sae.cfg.architecture == "topk"


def test_section_text_wraps_prose() -> None:
    speeds = {"saelens": 1000.0, "sparsify": 500.0, "saehooks_fp32": 1500.0,
              "saehooks_default": 2000.0}  # fmt: skip
    workload = {"k": 32, "d_sae": 4608, "train_tokens": 1_000_000, "batch_tokens": 4096,
                "context_size": 128}  # fmt: skip
    run = {"load_average_at_end": 2.0}
    details = {
        "command": "bench/compare", "mode": "full", "date": "2026-12-05 03:00 UTC",
        "machine": "x86_64, 2 cores", "torch_threads": 2, "omp_num_threads": None,
        "versions": ["torch==2.13.0"], "workload": workload, "eval_tokens_scored": 24_384,
        "harvest_tokens_per_s": 3300.0, "step_tokens_per_s": 4876.0,
        "runs": dict.fromkeys(report.RUN_NAMES, run),
    }  # fmt: skip
    text = report.section_text(report.comparison(runs_of(speeds), 1968.0, details))
    prose = [line for line in text.splitlines() if not line.startswith("|")]
    assert max(len(line) for line in prose) <= 100
    assert "1,968 tokens/s" in text
    assert "(OMP_NUM_THREADS unset)" in text
    assert "`bench/results/compare.json`" in text
    assert report.markdown_table(report.comparison(runs_of(speeds), 1968.0, details)) in text


def test_failed_venv_build_names_step(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "raise SystemExit(4)"]
    with pytest.raises(RuntimeError, match=r"failed with status 4 at `.*SystemExit\(4\)`"):
        venvs.run_build_step("saelens", tmp_path / "saelens", command)


def test_venv_path_that_is_file_raises(tmp_path: Path) -> None:
    (tmp_path / "saelens").write_text("not a folder")
    with pytest.raises(FileExistsError, match="is a file, not a venv"):
        venvs.venv_python("saelens", root=tmp_path)

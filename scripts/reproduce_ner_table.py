"""The NER results page, docs/results/ner.md: our CoNLL-2003 figures next to the lecture's table
(Collobert et al. 2011, as the CS224n slides show it), each with the command that produced it.

    python scripts/reproduce_ner_table.py                # the page from the committed records
    python scripts/reproduce_ner_table.py --check        # ... and compare with docs/results/ner.md
    python scripts/reproduce_ner_table.py --list         # every run's command, recorded or not
    python scripts/reproduce_ner_table.py --run          # first train what has no record
    python scripts/reproduce_ner_table.py --run --only ner_window_glove

Each row is a config trained with seeds 0, 1 and 2 (the GloVe row: 0-8) into
runs/ner/<config>_s<seed>/; its record (docs/results/records/ner/) keeps the command, config,
summary and per-epoch metrics. The GloVe seeds also form three ensembles of three (``lecturenn
eval RUN RUN RUN``); ``--keep`` scores each one whose runs are all in runs/ner/ and records its
command and F1 in docs/results/records/ner/ensembles/.
"""

from __future__ import annotations

import json
import shlex
import statistics

import results_common
from results_common import (
    ROOT,
    benchmark_cpu,
    load_at_end,
    machine_of,
    main,
    mean_sd,
    minutes,
    notes,
    record,
    seed_records,
    seeded,
    write_record,
)

PAGE = ROOT / "docs" / "results" / "ner.md"
SEEDS = (0, 1, 2)

# config, what it is, the lecture's row it answers, that row's test F1
ROWS = [
    ("ner_window_softmax", "window net, word-level softmax (WLL)", "supervised, WLL", 79.53),
    ("ner_window_maxmargin", "window net, max-margin (notes' J)", "—", None),
    ("ner_window", "window net, SLL (**headline**)", "supervised window NN (SLL)", 81.47),
    ("ner_pos_multitask", "window net, SLL + POS head (multitask)", "—", None),
    (
        "ner_window_glove",
        "window net (ReLU), SLL + GloVe 6B 50-d",
        "+ unsupervised pre-training",
        88.87,
    ),
]
LECTURE = [
    ("supervised window NN (WLL; C&W Table 4)", "79.53"),
    ("supervised window NN (SLL; the slide's first row)", "81.47"),
    ("+ unsupervised pre-training (SLL)", "88.67–88.87"),
    ("+ hand-crafted features (gazetteers etc.)", "89.59"),
    ("Brown-cluster baseline (slide)", "87.15"),
]
# more seeds where the row is close to its target; they also make the ensembles
SEEDS_OF = {"ner_window_glove": tuple(range(9))}
ENSEMBLE_CONFIG = "ner_window_glove"
ENSEMBLES = ((0, 1, 2), (3, 4, 5), (6, 7, 8))
# the GloVe row's bar, for the single models and the ensembles alike
GLOVE_TARGET = (88.7, "C&W's window network with their pre-trained embeddings")


def seeds_of(config: str) -> tuple[int, ...]:
    return SEEDS_OF.get(config, SEEDS)


RUNS = [run for config, *_ in ROWS for run in seeded("ner", config, config, seeds_of(config))]


def rows_of(config: str) -> list[tuple[int, dict]]:
    return seed_records("ner", config, seeds_of(config))


def ensemble_name(seeds) -> str:
    return f"{ENSEMBLE_CONFIG}_s{'-'.join(str(s) for s in seeds)}"


def ensemble_path(seeds):
    return results_common.RECORDS / "ner" / "ensembles" / f"{ensemble_name(seeds)}.json"


def ensemble_record(seeds) -> dict | None:
    path = ensemble_path(seeds)
    return json.loads(path.read_text()) if path.exists() else None


def keep_ensembles() -> None:
    """Score and record each ensemble whose runs have all finished under runs/ner/."""
    from lecturenn.experiments.inference import tag_split
    from lecturenn.train.metrics import entity_f1

    root = results_common.ROOT
    for seeds in ENSEMBLES:
        folders = [f"runs/ner/{ENSEMBLE_CONFIG}_s{s}" for s in seeds]
        if not all((root / f / "summary.json").exists() for f in folders):
            continue
        entry = {"members": folders, "command": shlex.join(["lecturenn", "eval", *folders])}
        for split in ("val", "test"):
            data, tags = tag_split([root / f for f in folders], split)
            scores = entity_f1([s.ner for s in data.sentences], tags, data.scheme)
            entry[split] = {k: scores[k] for k in ("f1", "precision", "recall")}
        write_record(ensemble_path(seeds), entry)


def ensemble_lines() -> list[str]:
    """The ensembles' table and their mean against C&W's figure."""
    kept = [(seeds, ensemble_record(seeds)) for seeds in ENSEMBLES]
    kept = [(seeds, rec) for seeds, rec in kept if rec is not None]
    if not kept:
        return ["No ensemble recorded yet: train its seeds, then `--keep`."]
    singles = {seed: rec["summary"]["test_f1"] for seed, rec in rows_of(ENSEMBLE_CONFIG)}
    lines = [
        "Each ensemble decodes every sentence from the averaged scores of three "
        f"`{ENSEMBLE_CONFIG}` runs (emissions and transitions: the tag path with the best "
        "summed score of the three SLL models). Its members' own test F1 are beside it.",
        "",
        "| seeds | dev F1 | test F1 | its members alone (test) | command |",
        "|---|---|---|---|---|",
    ]
    for seeds, rec in kept:
        alone = ", ".join(f"{singles[s]:.2f}" if s in singles else "?" for s in seeds)
        lines.append(
            f"| {', '.join(map(str, seeds))} | {rec['val']['f1']:.2f} | {rec['test']['f1']:.2f} "
            f"| {alone} | `{rec['command']}` |"
        )
    tests = [rec["test"]["f1"] for _, rec in kept]
    target, what = GLOVE_TARGET
    met = "above" if statistics.mean(tests) >= target else "**below**"
    lines += [
        "",
        f"- Ensembles of three: test F1 {mean_sd(tests)} ({len(tests)} of {len(ENSEMBLES)} "
        f"recorded), {met} {target:.2f} ({what}).",
    ]
    return lines


def results_table() -> list[str]:
    lines = [
        "| ours | seeds | dev F1 | test F1 | train time | lecture's row | its test F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, what, lecture_row, lecture_f1 in ROWS:
        runs = [rec["summary"] for _, rec in rows_of(config)]
        seeds = ", ".join(str(s) for s, _ in rows_of(config)) or "not run"
        dev = mean_sd([r["val_f1"] for r in runs])
        test = mean_sd([r["test_f1"] for r in runs])
        time = f"{mean_sd([r['train_seconds'] / 60 for r in runs], 1)} min" if runs else "—"
        lecture = f"{lecture_f1:.2f}" if lecture_f1 is not None else "—"
        lines.append(f"| {what} | {seeds} | {dev} | {test} | {time} | {lecture_row} | {lecture} |")
    return lines


def per_run_table() -> list[str]:
    lines = [
        "| run | best epoch / run | dev F1 | test F1 | POS acc. (dev) | train time | load at end "
        "(1 / 15 min) | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, *_ in ROWS:
        for seed, rec in rows_of(config):
            r = rec["summary"]
            pos = f"{r['val_pos_accuracy']:.2f}" if "val_pos_accuracy" in r else "—"
            lines.append(
                f"| {config} s{seed} | {r['best_epoch']} / {r['epochs_run']} | "
                f"{r['val_f1']:.2f} | {r['test_f1']:.2f} | {pos} | {minutes(r['train_seconds'])} "
                f"| {load_at_end(rec)} | `{rec['command']}` |"
            )
        lines += [
            f"| {run.name} | not run | | | | | | `{run.command()}` |"
            for run in seeded("ner", config, config, seeds_of(config))
            if record(run) is None
        ]
    return lines


def mean_test(config: str) -> float | None:
    values = [rec["summary"]["test_f1"] for _, rec in rows_of(config)]
    return statistics.mean(values) if values else None


def verdict() -> list[str]:
    """The rows against their targets, computed from the records."""
    lines = []
    for config, target, what in [
        ("ner_window", 81.47, "C&W's supervised SLL window network"),
        ("ner_window_glove", *GLOVE_TARGET),
    ]:
        mean = mean_test(config)
        if mean is None:
            continue
        met = "above" if mean >= target else "**below**"
        lines.append(
            f"- `{config}`: mean test F1 {mean:.2f} over {len(rows_of(config))} seeds, {met} "
            f"{target:.2f} ({what})."
        )
    softmax, sll = mean_test("ner_window_softmax"), mean_test("ner_window")
    if softmax is not None and sll is not None:
        lines.append(
            f"- SLL over word-level softmax, same network and features: {sll - softmax:+.2f} "
            "test F1 (C&W: +1.94)."
        )
    return lines


def bench_lines() -> list[str]:
    """The training-step speed table from benchmarks/results/ner.json."""
    path = ROOT / "benchmarks" / "results" / "ner.json"
    if not path.exists():
        return ["Not measured yet: `python benchmarks/bench_ner.py`."]
    bench = json.loads(path.read_text())
    load = round(bench.get("load_average_at_start", [float("nan")])[0], 1)
    machine = bench.get("machine", {})
    cpu = benchmark_cpu(machine)
    lines = [
        f"`python benchmarks/bench_ner.py` → `benchmarks/results/ner.json` ({cpu}, load "
        f"average {load} at the start; docs/performance.md has the figures of another 2-core "
        "machine); training tokens per second of one step, same model and batch in each row:",
        "",
        "| scoring | sentences × length | lecturenn manual | lecturenn jax.grad | PyTorch 1 thread "
        "| PyTorch 2 threads | manual / best PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("lecturenn_manual", "lecturenn_autodiff", "pytorch_1_threads", "pytorch_2_threads")
    for r in bench["rows"]:
        cells = " | ".join(f"{r[f'{k}_tokens_per_s']:,.0f}" for k in keys)
        lines.append(
            f"| {r['scoring']} | {r['sentences']} × {r['length']} | {cells} "
            f"| {r['lecturenn_manual_over_pytorch']:.2f} |"
        )
    return lines


NOTES = """
- **SLL vs WLL**: the sentence-level likelihood scores whole tag paths (transition scores and
  Viterbi decoding), so it cannot produce an I-PER after a B-LOC; the word-level softmax decides
  each token alone.
- **Max-margin** (the notes' J = max(0, 1 − s + s_c), with corrupted centre words as negatives)
  is the weakest and noisiest: the hinge stops pushing once the margin is met, and its scores are
  not probabilities, so each tag is a plain arg-max of uncalibrated scores.
- **Multitask**: a POS head on the shared hidden layer, the two losses summed; its dev POS token
  accuracy is in the per-run table.
- **GloVe 6B 50-d**: the word table starts from GloVe (lower-cased, digits kept as GloVe has
  them), GloVe's words join the vocabulary, the table learns at a smaller rate than the rest
  (`optim.embedding_lr_scale`), and the hidden units are ReLU (C&W's hard tanh in the other
  rows); see the config's header for the whole recipe. C&W's 88.67–88.87 used their own
  language-model embeddings, trained for weeks on Wikipedia.
- **Dev vs test**: every row loses several F1 points from eng.testa to eng.testb, as in the
  literature (testb is harder, with more unseen names).
"""


def build() -> str:
    records = [rec for config, *_ in ROWS for _, rec in rows_of(config)]
    lecture = ["| lecture's table (CoNLL-2003 test F1) | F1 |", "|---|---|"]
    lecture += [f"| {row} | {f1} |" for row, f1 in LECTURE]
    page = [
        "# Window NER on CoNLL-2003: our figures next to the lecture's table",
        "",
        "Generated by `python scripts/reproduce_ner_table.py` from the run records in "
        "`docs/results/records/ner/` (`--run` trains what has none). F1 is entity-level by "
        "conlleval's rules (exact span and type), in percent, on eng.testa (dev) and eng.testb "
        "(test); the summary's figures use the parameters of the best dev epoch. Train time is "
        "the sum of the epochs' seconds (the first epoch's compilation included); the load "
        "average when each run finished says whether it had the machine to itself (about 2 on "
        f"this 2-core machine when it did). Machine: {machine_of(records) or '—'}.",
        "",
        "## The lecture's table",
        "",
        *lecture,
        "",
        "## Ours (mean ± sd over the seeds listed)",
        "",
        *results_table(),
        "",
        *verdict(),
        "",
        "## Ensembles of seeds (GloVe row)",
        "",
        *ensemble_lines(),
        "",
        "## Every run, with its command",
        "",
        *per_run_table(),
        "",
        "## Speed of the training step",
        "",
        *bench_lines(),
        "",
        "## Notes",
        "",
        NOTES.strip(),
        "",
        *notes("ner"),
        "",
    ]
    return "\n".join(page)


if __name__ == "__main__":
    main(__doc__, RUNS, PAGE, build, keep_more=keep_ensembles)

"""The tagging task end to end on short real CoNLL-2003 sentences: a run folder whose F1 equals
seqeval's on the written predictions, ``evaluate_run`` and ``tag_text`` on it, the configs, the
width-bucketed epoch, GloVe initialisation."""

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from seqeval.metrics import f1_score

from lecturenn.data import conll
from lecturenn.data.schemes import is_valid
from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import inference, runner
from lecturenn.experiments.tasks import tagging
from lecturenn.models import window_tagger
from lecturenn.models.base import Model
from lecturenn.models.window_tagger import WindowTaggerConfig
from lecturenn.train import epochs
from lecturenn.train.metrics import entity_f1
from lecturenn.train.step import make_step

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("ner_*.toml"))
SHORT = 8  # every excerpt sentence fits one padded width: one compile per function


def _excerpt(source: Path, target: Path, num_sentences: int, max_lines: int) -> None:
    """The first ``num_sentences`` sentences of at most SHORT tokens, in CoNLL format."""
    with open(source, encoding="utf-8") as whole:
        head = "".join(itertools.islice(whole, max_lines))
    target.write_text(head, encoding="utf-8")
    kept = [s for s in conll.read_conll(target) if len(s.words) <= SHORT][:num_sentences]
    assert len(kept) == num_sentences
    lines = ["-DOCSTART- -X- -X- O\n\n"]
    for s in kept:
        lines += [" ".join(row) + "\n" for row in zip(s.words, s.pos, s.chunk, s.ner, strict=True)]
        lines.append("\n")
    target.write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = Path(__import__("os").environ.get("LECTURENN_DATA", ""))
    if not (root / "conll2003" / "eng.train").is_file():
        pytest.skip(f"shared CoNLL-2003 not found under {root} (set LECTURENN_DATA)")
    out = tmp_path_factory.mktemp("data")
    (out / "conll2003").mkdir()
    for name, count in (("eng.train", 300), ("eng.testa", 80), ("eng.testb", 80)):
        _excerpt(root / "conll2003" / name, out / "conll2003" / name, count, 12000)
    vectors = ["paris " + " ".join(["0.5"] * 8), "the " + " ".join(["-0.25"] * 8)]
    (out / "vectors.txt").write_text("\n".join(vectors) + "\n")
    return out


CONFIG = """
name = "tiny"
[data]
name = "conll2003"
word_dropout = 0.1
[model]
kind = "window_tagger"
scoring = "sll"
suffix_dim = 4
word_dim = 8
hidden = 24
multitask_pos = true
[optim]
learning_rate = 0.01
[train]
epochs = 3
batch_size = 16
monitor = "f1"
"""


@pytest.fixture(scope="module")
def trained_run(small_data, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LECTURENN_DATA", str(small_data))
        folder = tmp_path_factory.mktemp("runs")
        (folder / "tiny.toml").write_text(CONFIG)
        cfg = config_lib.load_config(folder / "tiny.toml")
        summary = runner.run(cfg, folder / "run", quiet=True)
        yield folder / "run", summary, small_data


def _read_predictions(path: Path):
    gold, pred, sentence = [], [], []
    for line in path.read_text().splitlines():
        if not line:
            gold.append([g for _, g, _ in sentence])
            pred.append([p for _, _, p in sentence])
            sentence = []
            continue
        sentence.append(line.split(" "))
        assert len(sentence[-1]) == 3
    return gold, pred


def test_run_reports_conlleval_f1_of_its_predictions(trained_run):
    run_dir, summary, data = trained_run
    for split, name in (("val", "eng.testa"), ("test", "eng.testb")):
        assert 0.0 <= summary[f"{split}_f1"] <= 100.0
        gold, pred = _read_predictions(run_dir / f"predictions_{split}.txt")
        sentences = conll.read_conll(data / "conll2003" / name)
        assert gold == [list(s.ner) for s in sentences]  # the file's own tags, not IOBES
        assert all(not t.startswith(("E-", "S-")) for p in pred for t in p)
        # seqeval's default mode follows conlleval (IOB1 and IOB2 read the same)
        assert summary[f"{split}_f1"] == pytest.approx(100 * f1_score(gold, pred), abs=1e-9)
    assert 0.0 < summary["val_pos_accuracy"] <= 100.0
    assert summary["epochs_run"] == 3


def test_short_run_learns_well_above_the_all_o_baseline(trained_run):
    _, summary, _ = trained_run
    assert summary["val_f1"] > 15.0, summary


def test_evaluate_run_prints_the_table_and_writes_conlleval_input(trained_run, tmp_path):
    run_dir, summary, data = trained_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LECTURENN_DATA", str(data))
        table = inference.evaluate_run(run_dir, "test", tmp_path / "pred.txt")
        assert f"FB1: {summary['test_f1']:6.2f}" in table.splitlines()[1]
        assert (tmp_path / "pred.txt").read_text() == (run_dir / "predictions_test.txt").read_text()
        tagged = inference.tag_text(run_dir, "Museums in Paris are amazing.")
        with pytest.raises(UserError, match="--split"):
            inference.evaluate_run(run_dir, "holdout")
    assert [t for t, _ in tagged] == ["Museums", "in", "Paris", "are", "amazing", "."]
    tags = [tag for _, tag in tagged]
    assert is_valid(tags, "iob2") or is_valid(tags, "iob1")


def test_tokenize_splits_punctuation_like_conll():
    assert inference.tokenize("Paris, France's U.S. 1996-08-22.") == [
        "Paris",
        ",",
        "France's",
        "U.S.",
        "1996-08-22",
        ".",
    ]


def test_glove_rows_initialise_the_word_table(small_data, monkeypatch):
    monkeypatch.setenv("LECTURENN_DATA", str(small_data))
    cfg = config_lib.load_config(
        Path(__file__).parents[2] / "configs" / "ner_window.toml",
        [
            "data.glove=true",
            f"data.glove_path={small_data / 'vectors.txt'}",
            "data.glove_scale=2.0",
            "model.word_dim=8",
        ],
    )
    vectors = tagging.vectors_path(cfg.data)
    vocabs = tagging.build_vocabs(cfg, tagging.read_split(cfg.data, "train"), vectors)
    assert "paris" in vocabs.words.index  # the file's words join the vocabulary
    matrix, stats = tagging.pretrained_vectors(cfg, vocabs, vectors)
    assert stats.found == 2
    np.testing.assert_array_equal(matrix[vocabs.words.index["paris"]], np.full(8, 1.0))
    np.testing.assert_array_equal(matrix[vocabs.words.index["the"]], np.full(8, -0.5))
    params, _ = tagging.build_model(cfg.model, vocabs, matrix).init(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(params["E_words"], matrix)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_configs_validate(path):
    cfg = config_lib.load_config(path)
    assert isinstance(cfg.model, WindowTaggerConfig) and cfg.train.monitor == "f1"


def test_width_classes():
    assert [epochs.width_of(n) for n in (0, 1, 8, 9, 16, 17, 113)] == [8, 8, 8, 16, 16, 32, 128]


def test_epoch_visits_every_sentence_once_in_batches_of_its_width():
    """A stand-in model whose 'gradient' counts the real tokens of each sentence (ids hold the
    sentence number), trained by SGD with rate 1: after one epoch, count = length."""
    lengths = np.array([3, 9, 1, 17, 8, 5, 30, 2, 12, 7, 16, 4])
    num = len(lengths)
    width = 32
    ids = np.where(np.arange(width) < lengths[:, None], np.arange(num)[:, None] + 1, 0)
    data = {
        "words": jnp.asarray(ids, jnp.int32),
        "mask": jnp.asarray(ids > 0, jnp.float32),
        "lengths": jnp.asarray(lengths),
    }
    widths_seen = []

    def value_and_grad(params, state, batch, key):
        widths_seen.append(batch["words"].shape[1])
        counts = jnp.zeros(num + 1).at[batch["words"]].add(batch["mask"])
        return (jnp.sum(batch["mask"]), (state, {})), {"count": -counts}

    model = Model("counter", None, None, value_and_grad, None)
    step = make_step(model, optax.sgd(1.0), "manual", jit=False)
    params = {"count": jnp.zeros(num + 1)}
    results = {}
    for driver in ("loop", "scan"):
        widths_seen.clear()
        epoch = epochs.bucketed(step, lengths=lengths, batch_size=3, driver=driver)
        results[driver] = epoch(
            params, {}, optax.sgd(1.0).init(params), data, jax.random.PRNGKey(0)
        )
        np.testing.assert_array_equal(results[driver][0]["count"][1:], lengths)
        # traced once per padded width: 8 (lengths ≤ 8), 16 and 32 (the scan: one branch each)
        assert sorted(widths_seen) == [8, 16, 32]
    assert float(results["loop"][3]) == pytest.approx(float(results["scan"][3]))


def test_eval_reads_the_run_folders_vocabularies_and_warns_when_a_file_changed(
    trained_run, tmp_path, monkeypatch, capsys
):
    import shutil

    run_dir, summary, data = trained_run
    changed = tmp_path / "data"
    shutil.copytree(data, changed)
    monkeypatch.setenv("LECTURENN_DATA", str(changed))
    # new training words would shift every word id of a vocabulary rebuilt from the files
    train = changed / "conll2003" / "eng.train"
    lines = [f"Zyx{i} NNP B-NP B-ORG\n" for i in range(50)]
    train.write_text("".join(lines) + "\n" + train.read_text())
    table = inference.evaluate_run(run_dir, "test")
    assert f"FB1: {summary['test_f1']:6.2f}" in table.splitlines()[1]
    assert "warning" not in capsys.readouterr().err  # the test file is the one the run used
    test_file = changed / "conll2003" / "eng.testb"
    test_file.write_text(test_file.read_text() + "Paris NNP B-NP B-LOC\n\n")
    inference.evaluate_run(run_dir, "test")
    err = capsys.readouterr().err
    assert "warning" in err and "eng.testb" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def second_seed(trained_run, tmp_path_factory):
    """The trained run's config with another seed: a two-model ensemble."""
    _, _, data = trained_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LECTURENN_DATA", str(data))
        folder = tmp_path_factory.mktemp("seed1")
        (folder / "tiny.toml").write_text(CONFIG.replace("epochs = 3", "epochs = 3\nseed = 1"))
        runner.run(config_lib.load_config(folder / "tiny.toml"), folder / "run", quiet=True)
        return folder / "run"


def _path_score(scores, transitions, path):
    """A tag path's sentence score under SLL: Σ_t s[t, y_t] + A0[y_0] + Σ_t A[y_{t-1}, y_t]."""
    total = float(transitions["A0"][path[0]]) + sum(float(scores[t, y]) for t, y in enumerate(path))
    return total + sum(float(transitions["A"][a, b]) for a, b in itertools.pairwise(path))


def test_an_ensemble_decodes_the_path_with_the_best_summed_score(trained_run, second_seed):
    run_dir, _, data = trained_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LECTURENN_DATA", str(data))
        runs = [inference._tagger(path) for path in (run_dir, second_seed)]
        _, vocabs = runs[0]
        cfg = runs[0][0].config
        split = tagging.eval_split(cfg, tagging.read_split(cfg.data, "test"), vocabs)
        # the same run twice is the run itself
        alone = inference.evaluate_run(run_dir, "test")
        assert inference.evaluate_run([run_dir, run_dir], "test") == alone
        both = inference.evaluate_run([run_dir, second_seed], "test")
    configs = [run.model_config for run, _ in runs]
    params = [run.params for run, _ in runs]
    ensemble = tagging.make_ensemble_predict(configs, vocabs, cfg.data.scheme)
    index, batch = split.batches[0]
    outs = [window_tagger.ner_scores(c, p, batch) for c, p in zip(configs, params, strict=True)]
    singles = [window_tagger.decode(s, t, batch["mask"]) for s, t in outs]
    mean = (outs[0][0] + outs[1][0]) / 2
    mean_t = jax.tree.map(lambda a, b: (a + b) / 2, outs[0][1], outs[1][1])
    picked = window_tagger.decode(mean, mean_t, batch["mask"])
    disagreements = 0
    for row in range(len(index)):
        n = int(np.asarray(batch["mask"][row]).sum())
        paths = [np.asarray(p[row, :n]) for p in (picked, *singles)]
        # summed over both models, the ensemble's path scores at least as high as each model's
        summed = [sum(_path_score(s[row, :n], t, path) for s, t in outs) for path in paths]
        assert summed[0] >= max(summed[1:]) - 1e-9
        disagreements += not np.array_equal(paths[1], paths[2])
    assert disagreements > 0  # two seeds that never disagree would prove nothing here
    f1 = entity_f1([s.ner for s in split.sentences], ensemble(params, split), split.scheme)["f1"]
    assert f"FB1: {f1:6.2f}" in both.splitlines()[1]


def test_an_ensemble_of_runs_that_read_the_data_differently_is_refused(
    trained_run, tmp_path, capsys
):
    import shutil

    from lecturenn.cli import main

    run_dir, _, data = trained_run
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    vocab = json.loads((other / "vocab.json").read_text())
    vocab["words"] = vocab["words"][:-1]
    (other / "vocab.json").write_text(json.dumps(vocab))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LECTURENN_DATA", str(data))
        assert main(["eval", str(run_dir), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(other) in err and "vocabularies" in err

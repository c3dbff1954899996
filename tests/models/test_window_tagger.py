"""The window tagger: hand-written backprop equals jax.grad for every scoring, multitask and
dropout; padding changes nothing; a short run on real CoNLL-2003 sentences learns."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.data import conll
from lecturenn.data.schemes import convert
from lecturenn.errors import UserError
from lecturenn.gradcheck import EXACT_FLOOR, relative_error
from lecturenn.models import window_tagger
from lecturenn.nn import layers
from lecturenn.train.metrics import entity_f1
from lecturenn.train.step import make_step

VOCAB, SUFFIXES, TAGS, POS_TAGS = 13, 7, 5, 4


def _config(**overrides):
    settings = dict(
        vocab_size=VOCAB,
        num_tags=TAGS,
        word_dim=4,
        caps_dim=2,
        suffix_vocab_size=SUFFIXES,
        suffix_dim=3,
        window_size=3,
        hidden=6,
        dtype="float64",
        embedding_scale=1.0,
    )
    settings.update(overrides)
    return window_tagger.WindowTaggerConfig(**settings)


def _batch(key, lengths=(5, 3, 1, 4), width=6, multitask=False):
    """Padded sentences with ids 0 (and tag 0) past each length, as conll.encode makes them."""
    keys = jax.random.split(key, 5)
    shape = (len(lengths), width)
    mask = (np.arange(width) < np.array(lengths)[:, None]).astype(np.float64)
    batch = {
        "words": jax.random.randint(keys[0], shape, 1, VOCAB),
        "caps": jax.random.randint(keys[1], shape, 1, conll.NUM_CAPS),
        "suffix": jax.random.randint(keys[2], shape, 1, SUFFIXES),
        "tags": jax.random.randint(keys[3], shape, 0, TAGS),
        "pos": jax.random.randint(keys[4], shape, 0, POS_TAGS),
    }
    if not multitask:
        del batch["pos"]
    batch = {k: jnp.where(mask > 0, v, 0).astype(jnp.int32) for k, v in batch.items()}
    batch["mask"] = jnp.asarray(mask)
    return batch


def _assert_manual_equals_autodiff(cfg, seed=0):
    model = window_tagger.make(cfg)
    key = jax.random.PRNGKey(seed)
    params, state = model.init(key)
    if "transitions" in params:  # zero transitions would hide errors in their gradient
        params["transitions"] = jax.tree_util.tree_map(
            lambda p: jax.random.normal(jax.random.fold_in(key, 7), p.shape, p.dtype),
            params["transitions"],
        )
    batch = _batch(jax.random.fold_in(key, 1), multitask=cfg.num_pos_tags > 0)
    autodiff = jax.value_and_grad(model.loss, has_aux=True)
    # one compiled function for both sources: XLA compiles take most of this test's time
    both = jax.jit(lambda *args: (autodiff(*args), model.manual_value_and_grad(*args)))
    ((loss_a, (_, aux_a)), grads_a), ((loss_m, (_, aux_m)), grads_m) = both(
        params, state, batch, jax.random.fold_in(key, 2)
    )
    assert jax.tree_util.tree_structure(grads_m) == jax.tree_util.tree_structure(params)
    assert float(loss_m) > 0
    assert relative_error(loss_m, loss_a, EXACT_FLOOR) <= 1e-12
    assert aux_a.keys() == aux_m.keys()
    for (path, a), m in zip(
        jax.tree_util.tree_leaves_with_path(grads_a),
        jax.tree_util.tree_leaves(grads_m),
        strict=True,
    ):
        assert m.shape == a.shape and m.dtype == a.dtype
        assert float(jnp.max(jnp.abs(a))) > 0, f"{jax.tree_util.keystr(path)} has no gradient"
        err = relative_error(m, a, EXACT_FLOOR)
        assert err <= 1e-7, f"{jax.tree_util.keystr(path)}: relative error {err:.2e}"


@pytest.mark.parametrize(
    "overrides",
    [
        {"scoring": "softmax", "input_dropout": 0.2, "activation": "tanh"},
        {"scoring": "sll"},
        {"scoring": "max_margin"},
        {"scoring": "max_margin", "corrupt_negatives": False, "num_pos_tags": 0, "suffix_dim": 0},
    ],
    ids=["softmax", "sll", "max_margin", "margin_tag_only"],
)
def test_manual_grads_match_autodiff_with_multitask_and_dropout(overrides):
    settings = {"num_pos_tags": POS_TAGS, "pos_weight": 0.7, "dropout": 0.3, **overrides}
    _assert_manual_equals_autodiff(_config(**settings))


def test_dropout_is_driven_by_the_key():
    # max-margin: its evaluation loss still draws corrupt windows, from the key
    model = window_tagger.make(_config(scoring="max_margin", dropout=0.5, input_dropout=0.3))
    params, state = model.init(jax.random.PRNGKey(0))
    batch = _batch(jax.random.PRNGKey(1))
    loss_of = jax.jit(model.loss, static_argnames="train")
    loss = [float(loss_of(params, state, batch, jax.random.PRNGKey(k))[0]) for k in (5, 5, 6)]
    assert loss[0] == loss[1] != loss[2]
    evaluation = [
        float(loss_of(params, state, batch, jax.random.PRNGKey(k), train=False)[0])
        for k in (5, 5, 6)
    ]
    assert evaluation[0] == evaluation[1] != evaluation[2]
    tag_only = window_tagger.make(_config(scoring="max_margin", corrupt_negatives=False))
    evaluation = [
        float(tag_only.loss(params, state, batch, jax.random.PRNGKey(k), train=False)[0])
        for k in (5, 6)
    ]
    assert evaluation[0] == evaluation[1]


def _pad_columns(batch, extra):
    return {k: jnp.pad(v, ((0, 0), (0, extra))) for k, v in batch.items()}


# softmax is a masked mean; SLL's recursions and the margin's corruption draws are where padding
# could leak in
@pytest.mark.parametrize("scoring", ["max_margin", "sll"])
def test_padded_positions_change_nothing(scoring):
    model = window_tagger.make(_config(scoring=scoring, num_pos_tags=POS_TAGS))
    params, state = model.init(jax.random.PRNGKey(4))
    batch = _batch(jax.random.PRNGKey(5), multitask=True)
    wide = _pad_columns(batch, 4)

    @jax.jit
    def run(batch, key):
        return model.manual_value_and_grad(params, state, batch, key), model.predict(
            params, state, batch
        )

    run_both = jax.jit(lambda key: (run(batch, key), run(wide, key)))
    (((loss, _), grads), tags), (((loss_wide, _), grads_wide), tags_wide) = run_both(
        jax.random.PRNGKey(6)
    )
    assert relative_error(loss, loss_wide, EXACT_FLOOR) <= 1e-12
    for g, g_wide in zip(
        jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_wide), strict=True
    ):
        assert relative_error(g, g_wide, EXACT_FLOOR) <= 1e-10
    np.testing.assert_array_equal(tags_wide[:, : tags.shape[1]], tags)
    assert not np.any(tags_wide[:, tags.shape[1] :])


def test_sll_prediction_is_the_viterbi_path_and_others_the_arg_max():
    for scoring in ("softmax", "sll"):
        model = window_tagger.make(_config(scoring=scoring, embedding_scale=3.0))
        params, state = model.init(jax.random.PRNGKey(8))
        if scoring == "sll":
            params["transitions"]["A"] = 5.0 * jax.random.normal(
                jax.random.PRNGKey(9), (TAGS, TAGS), jnp.float64
            )
        batch = _batch(jax.random.PRNGKey(10), lengths=(4,), width=4)
        tags = np.asarray(jax.jit(model.predict)(params, state, batch))[0]
        # brute force over all TAGS**4 paths, scored as C&W eq. 14 from the window scores
        scores = _emissions(params, batch)
        paths = np.stack(np.meshgrid(*[np.arange(TAGS)] * 4, indexing="ij"), -1).reshape(-1, 4)
        total = scores[np.arange(4), paths].sum(1)
        if scoring == "sll":
            A, A0 = (np.asarray(params["transitions"][k]) for k in ("A", "A0"))
            total = total + A0[paths[:, 0]] + A[paths[:, :-1], paths[:, 1:]].sum(1)
        np.testing.assert_array_equal(tags, paths[np.argmax(total)])


def _emissions(params, batch):
    """The window scores (L, K) of the one sentence of ``batch``, computed here from the
    parameters (window 3, hard tanh) rather than by the model's own forward code."""
    win = {n: layers.sentence_windows(batch[n], 3, 0) for n in ("words", "caps", "suffix")}
    x = jnp.concatenate([params["E_" + n][win[n]] for n in ("words", "caps", "suffix")], -1)
    x = x.reshape(x.shape[:2] + (-1,))
    a = jnp.clip(x @ params["hidden"]["W"] + params["hidden"]["b"], -1, 1)
    return np.asarray(a @ params["out"]["W"] + params["out"]["b"])[0]


def test_pretrained_vectors_initialize_the_word_table():
    vectors = np.arange(VOCAB * 4, dtype=np.float64).reshape(VOCAB, 4)
    params, _ = window_tagger.make(_config(pretrained=vectors)).init(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(params["E_words"], vectors)
    with pytest.raises(UserError, match="word_dim"):
        window_tagger.make(_config(pretrained=vectors[:, :3]))


def test_bad_settings_are_user_errors():
    for overrides in ({"scoring": "crf"}, {"window_size": 4}, {"dropout": 1.0}):
        with pytest.raises(UserError):
            window_tagger.make(_config(**overrides))


def _head(path, tmp_path, num_lines):
    """The first lines of a CoNLL file (reading all of eng.train takes a second)."""
    with open(path, encoding="utf-8") as whole:
        lines = list(itertools.islice(whole, num_lines))
    head = tmp_path / path.name
    head.write_text("".join(lines), encoding="utf-8")
    return head


def test_short_run_on_conll_learns(data_root, tmp_path):
    train_file = _head(data_root / "conll2003" / "eng.train", tmp_path, 4000)
    train_sents = conll.read_conll(train_file)[:200]
    assert len(train_sents) == 200
    dev_sents = conll.read_conll(data_root / "conll2003" / "eng.testa")[:300]
    train_sents = conll.convert_sentences(train_sents, "iob1", "iobes")
    # min_count 2 trains <unk> on the singletons, so unseen dev words have a usable vector
    words = conll.build_word_vocab(train_sents, min_count=2)
    suffixes = conll.build_suffix_vocab(train_sents)
    tags = conll.tag_vocab(train_sents, scheme="iobes")
    train = conll.encode(train_sents, words, tags, suffix_vocab=suffixes)
    dev = conll.encode(
        conll.convert_sentences(dev_sents, "iob1", "iobes"), words, tags, suffix_vocab=suffixes
    )
    cfg = window_tagger.WindowTaggerConfig(
        vocab_size=len(words),
        num_tags=len(tags),
        suffix_vocab_size=len(suffixes),
        suffix_dim=10,
        hidden=100,
        dropout=0.5,
        scoring="sll",
    )
    model = window_tagger.make(cfg)
    names = ("words", "caps", "suffix", "tags", "mask")
    data = {k: jnp.asarray(train[k][:, :40]) for k in names}
    params, state = model.init(jax.random.PRNGKey(0))
    # predicting O everywhere scores 0, and so does about the untrained model; 40 steps on 200
    # sentences (a vocabulary of 460 words) reach about 20
    assert _dev_f1(model, params, state, dev, dev_sents, tags) < 3.0
    optimizer = optax.adam(0.01)
    opt_state = optimizer.init(params)
    step = make_step(model, optimizer, "manual")
    key = jax.random.PRNGKey(1)
    for epoch in range(4):
        order = np.random.default_rng(epoch).permutation(200).reshape(10, 20)
        for rows in order:
            key, k = jax.random.split(key)
            batch = {n: v[rows] for n, v in data.items()}
            params, state, opt_state, _, _ = step(params, state, opt_state, batch, k)
    assert _dev_f1(model, params, state, dev, dev_sents, tags) > 12.0


def _dev_f1(model, params, state, dev, dev_sents, tags):
    predicted = np.asarray(jax.jit(model.predict)(params, state, dev))
    gold = [s.ner for s in dev_sents]
    pred = [
        convert(tags.decode(row[: len(g)]), "iobes", "iob1")
        for row, g in zip(predicted, gold, strict=True)
    ]
    return entity_f1(gold, pred)["f1"]


def test_lookup_tables_get_fan_in_one_under_collobert_scaling():
    from lecturenn.optim.regularize import fan_in_scales

    params, _ = window_tagger.make(_config(scoring="sll")).init(jax.random.PRNGKey(0))
    scales = fan_in_scales(params)
    assert [scales[f"E_{n}"] for n in ("words", "caps", "suffix")] == [1.0, 1.0, 1.0]
    window_dim = 3 * (4 + 2 + 3)
    assert scales["hidden"]["W"] == pytest.approx(1 / window_dim)

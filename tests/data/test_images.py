"""IDX reader, image datasets and on-device augmentation."""

import gzip
import itertools

import jax
import numpy as np
import pytest

from lecturenn.data.images import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    augment,
    load_digits_split,
    load_fashion_mnist,
    load_mnist,
    mirror_averaged,
    random_flip_horizontal,
    random_translate,
    read_idx,
)
from lecturenn.errors import UserError


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Independent IDX writer (LeCun's layout): 0 0 type ndim, big-endian dims, payload."""
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data: bytes, compress: bool):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def small_images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_uint8_images_and_labels(tmp_path, small_images, compress):
    labels = np.arange(5, dtype=np.uint8)
    images_path = write(tmp_path / "images", idx_bytes(small_images), compress)
    labels_path = write(tmp_path / "labels", idx_bytes(labels), compress)
    images = read_idx(images_path, expected_magic=IMAGES_MAGIC)
    assert images.dtype == np.uint8 and images.shape == (5, 4, 3)
    np.testing.assert_array_equal(images, small_images)
    np.testing.assert_array_equal(read_idx(labels_path, expected_magic=LABELS_MAGIC), labels)


@pytest.mark.parametrize(
    "type_code,dtype", [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32)]
)
def test_read_idx_reads_other_idx_types_big_endian(tmp_path, type_code, dtype):
    array = (np.arange(12).reshape(3, 4) - 5).astype(dtype) * 3
    path = write(tmp_path / "a.idx", idx_bytes(array, type_code), compress=False)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_truncated_file(tmp_path, small_images, compress):
    data = idx_bytes(small_images)[:-7]
    path = write(tmp_path / "cut.idx", data, compress)
    with pytest.raises(UserError, match=r"cut\.idx.*truncated.*need 60 payload bytes, found 53"):
        read_idx(path)


def test_read_idx_rejects_truncated_gzip_stream(tmp_path, small_images):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(small_images))[:-10])
    with pytest.raises(UserError, match=r"cut\.gz.*gzip"):
        read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path, small_images):
    path = write(tmp_path / "long.idx", idx_bytes(small_images) + b"xyz", compress=True)
    with pytest.raises(UserError, match=r"long\.idx.*trailing.*need 60 payload bytes, found 63"):
        read_idx(path)


def test_read_idx_rejects_wrong_magic(tmp_path, small_images):
    labels_path = write(tmp_path / "labels", idx_bytes(np.arange(3, dtype=np.uint8)), False)
    with pytest.raises(UserError, match=r"labels.*0x00000801, expected 0x00000803"):
        read_idx(labels_path, expected_magic=IMAGES_MAGIC)
    garbage = write(tmp_path / "garbage", b"PK\x03\x04" + bytes(20), compress=False)
    with pytest.raises(UserError, match=r"garbage.*not an IDX file"):
        read_idx(garbage)
    with pytest.raises(UserError, match=r"garbage.*expected 0x00000803"):
        read_idx(garbage, expected_magic=IMAGES_MAGIC)


def write_idx_dataset(folder, n_train_images, n_train_labels):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    sizes = {"train": (n_train_images, n_train_labels), "t10k": (3, 3)}
    for prefix, (n_images, n_labels) in sizes.items():
        images = rng.integers(0, 256, size=(n_images, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_labels, dtype=np.uint8)
        write(folder / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(images), compress=True)
        write(folder / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels), compress=True)


def test_load_mnist_from_small_files_scales_to_unit_interval(tmp_path):
    write_idx_dataset(tmp_path / "mnist", 4, 4)
    data = load_mnist(tmp_path)
    assert data["x_train"].shape == (4, 28, 28, 1) and data["x_train"].dtype == np.float32
    assert data["y_test"].shape == (3,) and data["y_test"].dtype == np.int32
    raw = read_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz")
    np.testing.assert_allclose(data["x_train"][..., 0] * 255.0, raw, atol=1e-4)


def test_load_rejects_image_label_count_mismatch(tmp_path):
    write_idx_dataset(tmp_path / "fashion-mnist", 4, 5)
    with pytest.raises(UserError, match="4 images but .* 5 labels"):
        load_fashion_mnist(tmp_path)


def test_load_names_missing_file_and_fetch_command(tmp_path):
    with pytest.raises(UserError, match=r"fashion-mnist.*lecturenn data fetch fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_shapes_and_balanced_labels(data_root):
    if not (data_root / "fashion-mnist").is_dir():
        pytest.skip(f"Fashion-MNIST not under {data_root}")
    data = load_fashion_mnist(data_root)
    assert data["x_train"].shape == (60000, 28, 28, 1) and data["x_test"].shape == (
        10000,
        28,
        28,
        1,
    )
    assert data["x_train"].dtype == np.float32
    assert 0.0 <= data["x_train"].min() and data["x_train"].max() == 1.0
    assert data["y_train"].dtype == np.int32 and data["y_test"].shape == (10000,)
    np.testing.assert_array_equal(np.bincount(data["y_train"], minlength=10), [6000] * 10)
    assert set(np.unique(data["y_test"])) == set(range(10))


def test_digits_split_is_stratified_and_deterministic():
    data = load_digits_split(test_fraction=0.2, seed=0)
    assert data["x_train"].shape[1:] == (8, 8, 1) and data["x_train"].dtype == np.float32
    assert len(data["x_train"]) + len(data["x_test"]) == 1797
    assert abs(len(data["x_test"]) - 0.2 * 1797) <= 1
    assert data["x_train"].min() == 0.0 and data["x_train"].max() == 1.0
    all_labels = np.concatenate([data["y_train"], data["y_test"]])
    expected = np.bincount(all_labels) * 0.2
    assert np.all(np.abs(np.bincount(data["y_test"], minlength=10) - expected) <= 1)
    again = load_digits_split(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again["y_test"], data["y_test"])
    other = load_digits_split(test_fraction=0.2, seed=1)
    assert not np.array_equal(other["y_test"], data["y_test"])


@pytest.fixture
def batch():
    # Strictly positive values, so zero fill marks exactly where content moved out.
    return np.random.default_rng(2).uniform(0.5, 1.0, size=(16, 6, 5, 2)).astype(np.float32)


def test_flip_mirrors_some_images_and_keeps_the_others(batch):
    out = np.asarray(jax.jit(random_flip_horizontal)(jax.random.key(0), batch))
    assert out.shape == batch.shape
    flipped = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch, strict=True)]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)
    always = random_flip_horizontal(jax.random.key(0), batch, p=1.0)
    np.testing.assert_array_equal(always, batch[:, :, ::-1])


def shift_image(image, dy, dx):
    """Brute force: out[h, w] = image[h − dy, w − dx], zero where that falls outside."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    for r, c in itertools.product(range(h), range(w)):
        if 0 <= r - dy < h and 0 <= c - dx < w:
            out[r, c] = image[r - dy, c - dx]
    return out


def test_translate_shifts_each_image_within_range_with_zero_fill(batch):
    max_shift = 2
    out = np.asarray(jax.jit(random_translate, static_argnums=2)(jax.random.key(3), batch, 2))
    assert out.shape == batch.shape
    shifts = []
    for image, moved in zip(batch, out, strict=True):
        matches = [
            (dy, dx)
            for dy, dx in itertools.product(range(-max_shift, max_shift + 1), repeat=2)
            if np.array_equal(moved, shift_image(image, dy, dx))
        ]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) > 1


def test_augmentation_is_deterministic_for_a_key_and_varies_across_keys(batch):
    run = jax.jit(augment, static_argnames=("flip", "max_shift"))
    a = run(jax.random.key(4), batch)
    np.testing.assert_array_equal(a, run(jax.random.key(4), batch))
    assert not np.array_equal(a, run(jax.random.key(5), batch))
    assert a.shape == batch.shape
    np.testing.assert_array_equal(augment(jax.random.key(4), batch, flip=False, max_shift=0), batch)


def test_mirror_averaged_scores_are_log_mean_probabilities_and_mirror_invariant(batch):
    rng = np.random.default_rng(6)
    weights = rng.normal(size=(batch[0].size, 4)).astype(np.float32)

    def logits(params, state, x):  # not mirror-symmetric: a dense layer over all pixels
        return x.reshape(x.shape[0], -1) @ params

    scores = np.asarray(jax.jit(mirror_averaged(logits))(weights, {}, batch))

    def probs(x):
        z = logits(weights, {}, x).astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    expected = np.log(0.5 * (probs(batch) + probs(batch[:, :, ::-1])))
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, rtol=1e-5)
    mirrored = np.asarray(mirror_averaged(logits)(weights, {}, batch[:, :, ::-1]))
    np.testing.assert_allclose(mirrored, scores, rtol=1e-5, atol=1e-6)
    assert not np.allclose(probs(batch), probs(batch[:, :, ::-1]), atol=1e-3)

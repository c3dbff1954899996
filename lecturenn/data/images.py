"""Image data: the IDX reader (Fashion-MNIST, MNIST), scikit-learn's 8×8 digits, and on-device
augmentation (random horizontal flips and translations) that runs inside a jitted epoch.

IDX format (LeCun's MNIST page): a big-endian header ``0x00 0x00 <dtype code> <ndim>``, then
``ndim`` big-endian uint32 dimension sizes, then the payload in row-major order. Images are
``0x00000803`` (2051: uint8, 3 dims), labels ``0x00000801`` (2049: uint8, 1 dim).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from lecturenn.data.registry import data_root
from lecturenn.errors import UserError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# IDX type codes → big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise UserError(
            f"{path}: corrupt or truncated gzip stream ({err}); fetch it again"
        ) from None


def read_idx(path: str | Path, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip, detected from the 1f 8b magic bytes) into a numpy array.

    Checks the magic number (against ``expected_magic`` when given, e.g. ``IMAGES_MAGIC``) and that
    the payload holds exactly the product of the declared dimensions; any mismatch is a
    ``UserError`` naming the file, what was expected and what was found.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: {len(data)} bytes, too short for an IDX header (expected ≥ 4)")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise UserError(
            f"{path}: IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}; "
            "is this the right file?"
        )
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or type_code not in _IDX_DTYPES or ndim == 0:
        raise UserError(
            f"{path}: not an IDX file (magic number 0x{magic:08x}; expected 0x0000TTNN with type "
            f"code TT in {{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} and NN ≥ 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header ({len(data)} bytes, expected {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "trailing bytes after the data"
        raise UserError(
            f"{path}: {problem}: dimensions {dims} need {expected} payload bytes, found {found}"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _load_idx_dataset(name: str, root: str | Path | None) -> dict[str, np.ndarray]:
    folder = (Path(root) if root is not None else data_root()) / name
    out = {}
    for split, (images_file, labels_file) in _IDX_FILES.items():
        images_path, labels_path = folder / images_file, folder / labels_file
        for path in (images_path, labels_path):
            if not path.is_file():
                raise UserError(
                    f"{path} not found: run `lecturenn data fetch {name}` or set LECTURENN_DATA"
                )
        images = read_idx(images_path, expected_magic=IMAGES_MAGIC)
        labels = read_idx(labels_path, expected_magic=LABELS_MAGIC)
        if len(images) != len(labels):
            raise UserError(
                f"{folder}: {images_file} holds {len(images)} images but {labels_file} holds "
                f"{len(labels)} labels; fetch the dataset again"
            )
        out[f"x_{split}"] = (images.astype(np.float32) / 255.0)[..., None]
        out[f"y_{split}"] = labels.astype(np.int32)
    return out


# Zalando's label names, in label order (github.com/zalandoresearch/fashion-mnist)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_fashion_mnist(root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Fashion-MNIST from ``<root>/fashion-mnist/`` (root defaults to $LECTURENN_DATA).

    Returns x_train (60000, 28, 28, 1) float32 in [0, 1], y_train int32, x_test, y_test.
    """
    return _load_idx_dataset("fashion-mnist", root)


def load_mnist(root: str | Path | None = None) -> dict[str, np.ndarray]:
    """MNIST from ``<root>/mnist/``, in the same layout as ``load_fashion_mnist``."""
    return _load_idx_dataset("mnist", root)


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's bundled 8×8 digits (1,797 images): stratified, deterministic split.

    x (N, 8, 8, 1) float32 scaled from 0..16 to [0, 1]; y int32.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


# --- on-device augmentation (jit-safe: shapes are static, randomness comes from the key) --------


def random_flip_horizontal(key: Array, x: Array, p: float = 0.5) -> Array:
    """Mirror each NHWC image left-right with probability p, independently per image."""
    flip = jax.random.bernoulli(key, p, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def random_translate(key: Array, x: Array, max_shift: int = 2) -> Array:
    """Shift each image by (dy, dx) drawn uniformly from [−max_shift, max_shift]², zero fill.

    Pads every side by max_shift and crops a random same-size window per image.
    """
    if max_shift == 0:
        return x
    n, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)

    def crop(image: Array, offset: Array) -> Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def augment(key: Array, x: Array, flip: bool = True, max_shift: int = 2) -> Array:
    """Random horizontal flip (if ``flip``) then random translation by up to ``max_shift``."""
    flip_key, shift_key = jax.random.split(key)
    if flip:
        x = random_flip_horizontal(flip_key, x)
    return random_translate(shift_key, x, max_shift)


def mirror_averaged(predict):
    """Test-time augmentation with the training flips: the scores of an NHWC image are the log of
    the mean class probabilities of the image and its mirror image,
    log ½(softmax f(x) + softmax f(x mirrored)), so argmax, accuracy and cross-entropy read them
    as ordinary log-probabilities. ``predict(params, state, x)`` returns logits."""

    def scores(params, state, x):
        plain = jax.nn.log_softmax(predict(params, state, x), axis=-1)
        mirrored = jax.nn.log_softmax(predict(params, state, x[:, :, ::-1, :]), axis=-1)
        return jnp.logaddexp(plain, mirrored) - jnp.log(2.0)

    return scores

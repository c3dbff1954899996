"""The dataset registry: fetch from a local HTTP server, refusal of bad bytes, real-data verify."""

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from lecturenn.data import registry
from lecturenn.data.registry import DATASETS, DataFile, Dataset
from lecturenn.errors import UserError

PAYLOAD = b"the quick brown fox\n" * 5000


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; ``/drop/...`` promises more bytes than it sends, then hangs up."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if self.path.startswith("/drop/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {}
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _register(monkeypatch, *files: DataFile) -> None:
    monkeypatch.setitem(DATASETS, "toy", Dataset("toy", "a test dataset", "toy", files))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_fetch_good_payload_lands_verified_without_temp_files(server, monkeypatch, tmp_path):
    httpd, base = server
    httpd.files["/files/a.txt"] = PAYLOAD
    _register(
        monkeypatch,
        DataFile("toy/a.txt", "https://example.org/files/a.txt", (("sha256", _sha256(PAYLOAD)),)),
    )
    paths = registry.fetch("toy", root=tmp_path, base_url=base)
    assert paths == [tmp_path / "toy" / "a.txt"]
    assert paths[0].read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "toy") == ["a.txt"]
    assert registry.verify("toy", root=tmp_path) == [(paths[0], True, "ok")]
    assert registry.dataset_path("toy", "a.txt", root=tmp_path) == paths[0]

    registry.fetch("toy", root=tmp_path, base_url=base)
    assert httpd.requests == ["/files/a.txt"], (
        "a present, verified file must not be downloaded again"
    )


def test_fetch_accepts_any_listed_digest(server, monkeypatch, tmp_path):
    httpd, base = server
    httpd.files["/a.txt"] = PAYLOAD
    digests = (("sha256", "0" * 64), ("md5", hashlib.md5(PAYLOAD).hexdigest()))
    _register(monkeypatch, DataFile("toy/a.txt", "https://example.org/a.txt", digests))
    assert registry.fetch("toy", root=tmp_path, base_url=base)[0].read_bytes() == PAYLOAD


def test_fetch_refuses_corrupted_payload_and_leaves_nothing(server, monkeypatch, tmp_path):
    httpd, base = server
    corrupted = bytearray(PAYLOAD)
    corrupted[1234] ^= 0x01
    httpd.files["/a.txt"] = bytes(corrupted)
    expected = _sha256(PAYLOAD)
    _register(
        monkeypatch, DataFile("toy/a.txt", "https://example.org/a.txt", (("sha256", expected),))
    )
    with pytest.raises(UserError) as error:
        registry.fetch("toy", root=tmp_path, base_url=base)
    message = str(error.value)
    assert "toy/a.txt" in message and expected in message and _sha256(bytes(corrupted)) in message
    assert _leftovers(tmp_path / "toy") == []


def test_fetch_dropped_connection_is_a_user_error_and_leaves_nothing(server, monkeypatch, tmp_path):
    _, base = server
    _register(
        monkeypatch,
        DataFile("toy/a.txt", "https://example.org/drop/a.txt", (("sha256", _sha256(PAYLOAD)),)),
    )
    with pytest.raises(UserError, match="cut off after 33333 of 100000 bytes"):
        registry.fetch("toy", root=tmp_path, base_url=base, timeout=10)
    assert _leftovers(tmp_path / "toy") == []


def test_fetch_404_is_a_user_error(server, monkeypatch, tmp_path):
    _, base = server
    _register(
        monkeypatch, DataFile("toy/a.txt", "https://example.org/nope.txt", (("sha256", "0" * 64),))
    )
    with pytest.raises(UserError, match="404"):
        registry.fetch("toy", root=tmp_path, base_url=base)
    assert _leftovers(tmp_path / "toy") == []


def test_fetch_extracts_a_member_from_a_zip_archive(server, monkeypatch, tmp_path):
    httpd, base = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("other.txt", b"not this one")
        bundle.writestr("vectors.txt", PAYLOAD)
    httpd.files["/data/bundle.zip"] = buffer.getvalue()
    wanted = DataFile(
        "toy/vectors.txt",
        "https://example.org/data/bundle.zip",
        (("sha256", _sha256(PAYLOAD)),),
        member="vectors.txt",
    )
    _register(monkeypatch, wanted)
    assert registry.fetch("toy", root=tmp_path, base_url=base)[0].read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "toy") == ["vectors.txt"]

    _register(monkeypatch, wanted._replace(path="toy/missing.txt", member="missing.txt"))
    with pytest.raises(UserError, match="no member 'missing.txt'"):
        registry.fetch("toy", root=tmp_path, base_url=base)
    assert _leftovers(tmp_path / "toy") == ["vectors.txt"]


def test_dataset_path_names_the_missing_file_and_the_fix(tmp_path):
    with pytest.raises(UserError) as error:
        registry.dataset_path("ptb", root=tmp_path)
    message = str(error.value)
    assert "missing ptb/ptb.train.txt" in message and "lecturenn data fetch ptb" in message
    assert str(tmp_path) in message
    with pytest.raises(UserError, match="unknown dataset"):
        registry.dataset_path("imagenet", root=tmp_path)


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LECTURENN_DATA", str(tmp_path))
    assert registry.data_root() == tmp_path
    monkeypatch.delenv("LECTURENN_DATA")
    assert registry.data_root() == Path.home() / ".cache" / "lecturenn"


def test_verify_accepts_the_shared_copies(data_root):
    for name in ("ptb", "conll2003"):
        results = registry.verify(name, root=data_root)
        assert len(results) == 3
        assert all(ok for _, ok, _ in results), results
    assert registry.dataset_path("ptb", "ptb.valid.txt", root=data_root).name == "ptb.valid.txt"


def test_verify_accepts_debian_fashion_mnist_and_reports_missing(data_root, tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(data_root / "fashion-mnist" / name)
    results = {
        path.name: (ok, message)
        for path, ok, message in registry.verify("fashion-mnist", root=tmp_path)
    }
    assert results["train-labels-idx1-ubyte.gz"] == (True, "ok")
    assert results["t10k-labels-idx1-ubyte.gz"] == (True, "ok")
    assert results["train-images-idx3-ubyte.gz"][0] is False
    assert "missing" in results["train-images-idx3-ubyte.gz"][1]


def test_verify_detects_an_altered_file(data_root, tmp_path):
    (tmp_path / "ptb").mkdir()
    for name in ("ptb.train.txt", "ptb.test.txt"):
        (tmp_path / "ptb" / name).symlink_to(data_root / "ptb" / name)
    altered = bytearray((data_root / "ptb" / "ptb.valid.txt").read_bytes())
    altered[100] ^= 0x20
    (tmp_path / "ptb" / "ptb.valid.txt").write_bytes(bytes(altered))
    results = {
        path.name: (ok, message) for path, ok, message in registry.verify("ptb", root=tmp_path)
    }
    assert results["ptb.valid.txt"][0] is False
    assert (
        "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"
        in results["ptb.valid.txt"][1]
    )
    assert results["ptb.train.txt"] == (True, "ok")


def test_glove_subset_stands_in_for_the_full_file(data_root):
    path = registry.dataset_path("glove", "glove.6B.50d.txt", root=data_root)
    assert path.name in ("glove.6B.50d.txt", "glove.6B.50d.subset.txt.gz")
    assert registry.dataset_path("glove", "glove.6B.50d.subset.txt.gz", root=data_root) == path
    rows = {row.name: row for row in registry.list_datasets(root=data_root)}
    assert set(rows) == {"conll2003", "ptb", "tinyshakespeare", "fashion-mnist", "mnist", "glove"}
    assert rows["glove"].present and rows["ptb"].present
    assert not rows["mnist"].present or (data_root / "mnist").is_dir()

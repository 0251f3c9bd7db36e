"""The data-set loader: data directory, checksum and shape checks, fetch and cache, user CSVs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from oml.bench import datasets
from oml.bench.datasets import BANKNOTE, IRIS, DatasetError


@pytest.fixture(autouse=True)
def _no_data_dir_from_the_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests say where to look; CI's OML_DATA_DIR must not answer for them."""
    monkeypatch.delenv("OML_DATA_DIR", raising=False)
    monkeypatch.delenv("OML_CACHE_DIR", raising=False)


def test_known_sets_load_from_the_data_dir(data_dir: Path, tmp_path: Path) -> None:
    iris = datasets.load("iris", data_dir=data_dir, cache_dir=tmp_path, download=False)
    assert (iris.n, iris.features, iris.target) == (150, list(IRIS.features), "species")
    assert iris.classes == ["setosa", "versicolor", "virginica"]
    assert iris.X[0] == {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                         "petal_width": 0.2}  # fmt: skip
    assert iris.sha256 == IRIS.sha256
    banknote = datasets.load("banknote", data_dir=data_dir, cache_dir=tmp_path, download=False)
    assert (banknote.n, banknote.classes, banknote.task) == (1372, [0, 1], "classification")
    assert banknote.y.count(1) == 610
    assert not list(tmp_path.iterdir()), "nothing is cached when the data dir has the file"


def test_the_data_dir_comes_from_the_environment(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OML_DATA_DIR", str(data_dir))
    path, digest = datasets.locate("iris", cache_dir=tmp_path, download=False)
    assert path == data_dir / "iris.csv"
    assert digest == IRIS.sha256


def test_a_modified_copy_is_a_checksum_error(data_dir: Path, tmp_path: Path) -> None:
    text = (data_dir / "banknote.csv").read_text().replace("3.6216", "3.6217", 1)
    (tmp_path / "banknote.csv").write_text(text)
    with pytest.raises(DatasetError, match="checksum mismatch") as err:
        datasets.load("banknote", data_dir=tmp_path, cache_dir=tmp_path / "c", download=False)
    assert BANKNOTE.sha256 in str(err.value)
    assert hashlib.sha256(text.encode()).hexdigest() in str(err.value)


def test_shape_check_names_rows_and_class_counts(data_dir: Path) -> None:
    text = (data_dir / "banknote.csv").read_text()
    short = datasets.parse_csv("\n".join(text.splitlines()[:-3]), "class", name="banknote")
    with pytest.raises(DatasetError, match="1369 rows with class counts"):
        datasets.check_shape(short, BANKNOTE)
    renamed = datasets.parse_csv(text.replace("variance", "var", 1), "class", name="banknote")
    with pytest.raises(DatasetError, match="columns"):
        datasets.check_shape(renamed, BANKNOTE)


def test_the_packaged_copies_load_offline_by_default(tmp_path: Path) -> None:
    ds = datasets.load("banknote", cache_dir=tmp_path, download=False)
    assert ds.source == str(datasets.packaged_dir() / "banknote.csv")
    assert ds.sha256 == BANKNOTE.sha256
    assert datasets.load("iris", cache_dir=tmp_path, download=False).sha256 == IRIS.sha256
    assert not list(tmp_path.iterdir()), "the packaged copy is read in place"
    readme = (datasets.packaged_dir() / "README.md").read_text()
    assert "Fisher" in readme and "Lohweg" in readme and "CC BY 4.0" in readme


def test_a_data_dir_comes_before_the_packaged_copy(tmp_path: Path) -> None:
    (tmp_path / "iris.csv").write_text("not,iris\n")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        datasets.load("iris", data_dir=tmp_path, cache_dir=tmp_path / "c", download=False)


def test_missing_without_download_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found") as err:
        datasets.load("iris", data_dir=tmp_path / "d", cache_dir=tmp_path / "c", download=False,
                      packaged=False)
    assert str(tmp_path / "d" / "iris.csv") in str(err.value)
    assert str(tmp_path / "c" / "iris.csv") in str(err.value)
    with pytest.raises(DatasetError, match="unknown data set"):
        datasets.load("mnist", download=False)


# --------------------------------------------------------------------------------------------
# fetching, always from a local copy in the origin's own format


def sklearn_format_iris(canonical: Path) -> bytes:
    """The canonical iris as scikit-learn ships it: count header, class numbers."""
    lines = canonical.read_text().splitlines()[1:]
    names = ["setosa", "versicolor", "virginica"]
    rows = [",".join([*line.split(",")[:4], str(names.index(line.split(",")[4]))])
            for line in lines]  # fmt: skip
    return ("\n".join(["150,4,setosa,versicolor,virginica", *rows]) + "\n").encode()


def uci_format_banknote(canonical: Path) -> bytes:
    """The canonical banknote as UCI serves it: no header (and here CRLF line ends)."""
    return "\r\n".join(canonical.read_text().splitlines()[1:]).encode() + b"\r\n"


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 for the test's duration."""
    root = tmp_path / "origin"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_from_a_file_url_converts_verifies_and_caches(data_dir: Path, tmp_path: Path):
    origin = tmp_path / "iris-origin.csv"
    origin.write_bytes(sklearn_format_iris(data_dir / "iris.csv"))
    cache = tmp_path / "cache"
    url = origin.as_uri()
    ds = datasets.load("iris", data_dir=tmp_path / "none", cache_dir=cache, url=url)
    assert ds.sha256 == IRIS.sha256
    assert (cache / "iris.csv").read_bytes() == (data_dir / "iris.csv").read_bytes()
    assert not (cache / "iris.csv.verified.json").exists()
    origin.unlink()  # the second load must come from the cache
    again = datasets.load("iris", cache_dir=cache, url=url, download=False)
    assert again.X == ds.X and again.y == ds.y


def test_fetch_over_http_from_the_uci_format(data_dir, tmp_path, http_root, monkeypatch):
    root, base = http_root
    (root / "data_banknote_authentication.txt").write_bytes(
        uci_format_banknote(data_dir / "banknote.csv")
    )
    monkeypatch.delenv("OML_DATA_DIR", raising=False)
    monkeypatch.setenv("OML_CACHE_DIR", str(tmp_path / "oml-cache"))
    url = f"{base}/data_banknote_authentication.txt"
    ds = datasets.load("banknote", url=url)
    assert ds.sha256 == BANKNOTE.sha256
    assert ds.source == str(tmp_path / "oml-cache" / "datasets" / "banknote.csv")


def test_a_conversion_that_does_not_reproduce_the_checksum_is_kept_if_the_shape_holds(
    data_dir: Path, tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    raw = uci_format_banknote(data_dir / "banknote.csv").replace(b"3.6216,", b"3.62160,", 1)
    (root / "bank.txt").write_bytes(raw)
    cache = tmp_path / "cache"
    ds = datasets.load("banknote", cache_dir=cache, url=f"{base}/bank.txt")
    assert ds.n == 1372 and ds.sha256 != BANKNOTE.sha256
    assert "shape and class counts" in (cache / "banknote.csv.verified.json").read_text()
    # the cached file is trusted on the next load because the sidecar vouches for it ...
    assert datasets.load("banknote", cache_dir=cache, download=False,
                         packaged=False).sha256 == ds.sha256
    # ... but not once it has changed
    cached = cache / "banknote.csv"
    cached.write_text(cached.read_text().replace("3.62160", "3.62161"))
    with pytest.raises(DatasetError, match=r"checksum mismatch.*delete it"):
        datasets.load("banknote", cache_dir=cache, download=False, packaged=False)


def test_a_wrong_origin_file_is_not_cached(data_dir: Path, tmp_path: Path) -> None:
    origin = tmp_path / "short.txt"
    origin.write_bytes(b"\n".join(uci_format_banknote(data_dir / "banknote.csv").split(b"\n")[:-5]))
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="class counts"):
        datasets.load("banknote", cache_dir=cache, url=origin.as_uri())
    assert not (cache / "banknote.csv").exists()


def test_fetch_errors_are_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="could not fetch iris"):
        datasets.load("iris", cache_dir=tmp_path, url=(tmp_path / "absent.csv").as_uri())
    with pytest.raises(DatasetError, match="only http, https and file"):
        datasets.load("iris", cache_dir=tmp_path, url="ftp://127.0.0.1/iris.csv")


def test_origins_are_the_public_ones() -> None:
    assert IRIS.url.startswith("https://raw.githubusercontent.com/scikit-learn/scikit-learn/")
    assert IRIS.url.endswith("/sklearn/datasets/data/iris.csv")
    assert BANKNOTE.url.startswith("https://archive.ics.uci.edu/")
    assert BANKNOTE.url.endswith("/00267/data_banknote_authentication.txt")


def test_the_installed_sklearn_iris_converts_to_the_canonical_file(data_dir: Path) -> None:
    sklearn = pytest.importorskip("sklearn")
    raw = (Path(sklearn.__file__).parent / "datasets" / "data" / "iris.csv").read_bytes()
    assert datasets.iris_from_sklearn(raw) == (data_dir / "iris.csv").read_bytes()


# --------------------------------------------------------------------------------------------
# user CSVs


def test_user_csv_classification_and_regression(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("a,b,label\n1,2.5,yes\n3,-1e3,no\n\n0,0,yes\n")
    ds = datasets.load_csv(path, "label")
    assert (ds.name, ds.task, ds.classes, ds.n) == ("mine", "classification", ["no", "yes"], 3)
    assert ds.X[1] == {"a": 3.0, "b": -1000.0}
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    path.write_text("x,y\n1,0.5\n2,1.5\n3,2\n")
    reg = datasets.load_csv(path, "y")
    assert (reg.task, reg.y) == ("regression", [0.5, 1.5, 2.0])
    assert datasets.load_csv(path, "y", task="classification").y == ["0.5", "1.5", "2"]
    path.write_text("x,y\n1,0\n2,1\n")
    assert datasets.load_csv(path, "y").y == [0, 1]


def test_user_csv_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,t\n1,2,x\n1,oops,y\n")
    with pytest.raises(DatasetError, match=r"line 3, column 'b': 'oops' is not a finite number"):
        datasets.load_csv(path, "t")
    path.write_text("a,b,t\n1,nan,x\n")
    with pytest.raises(DatasetError, match="not a finite number"):
        datasets.load_csv(path, "t")
    with pytest.raises(DatasetError, match="no column 'target'"):
        datasets.load_csv(path, "target")
    path.write_text("a,t\n1,x\n2\n")
    with pytest.raises(DatasetError, match="line 3 has 1 cells"):
        datasets.load_csv(path, "t")
    path.write_text("a,t\n1,x\n")
    with pytest.raises(DatasetError, match="regression target 'x'"):
        datasets.load_csv(path, "t", task="regression")
    with pytest.raises(DatasetError, match="cannot read"):
        datasets.load_csv(tmp_path / "absent.csv", "t")


def test_cache_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OML_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path / "oml" / "datasets"
    monkeypatch.setenv("OML_CACHE_DIR", str(tmp_path / "x"))
    assert datasets.default_cache_dir() == tmp_path / "x" / "datasets"

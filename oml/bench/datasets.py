"""Data sets for the bench: the known ones (Iris, Banknote) and any CSV with a target column.

Iris and Banknote ship inside the package (``oml/data/``, with their citation and licence in
``oml/data/README.md``), so loading them needs no network and no folder beside the checkout.
A known data set is looked for, in order, in the data directory if one is given
(``--data-dir`` or the ``OML_DATA_DIR`` environment variable), then in the package, then in
the cache (``--cache-dir``, ``OML_CACHE_DIR``, or ``~/.cache/oml``, under ``datasets/``), and,
failing all, fetched from its public origin into the cache (an explicit ``url`` skips the
packaged copy).  Whatever the place, the file must be the canonical CSV: its sha256 is checked
before it is parsed and its shape and class counts after.

The origins do not publish the canonical form itself, so fetching converts: scikit-learn's
``iris.csv`` has a count line for a header and class numbers for labels; UCI's
``data_banknote_authentication.txt`` has no header at all.  If a converted file does not come
out byte-identical to the canonical one (an origin could change its number formatting), it is
still accepted when its shape and class counts are right, and the cache keeps a small sidecar
record saying so, so that the next load knows that file was verified that way.

>>> ds = from_rows("toy", ["a", "b", "y"], [["1", "2", "x"], ["3", "4", "z"]], target="y")
>>> ds.task, ds.classes, ds.X[1]
('classification', ['x', 'z'], {'a': 3.0, 'b': 4.0})
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import io
import json
import math
import os
import tempfile
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from oml.learner import Label, label_sort_key

Task = Literal["classification", "regression"]

MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 30.0


class DatasetError(Exception):
    """A data set that cannot be found, fetched, verified or parsed; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Rows as feature dicts (what ``learn_one`` takes) with their targets, in file order."""

    name: str
    features: list[str]
    target: str
    task: Task
    X: list[dict[str, float]]
    y: list[Any]
    source: str = ""
    sha256: str = ""

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def classes(self) -> list[Label]:
        """The labels present, in the order learners index them (empty for regression)."""
        if self.task != "classification":
            return []
        return sorted(set(self.y), key=label_sort_key)


@dataclass(frozen=True)
class KnownDataset:
    """How to find, fetch and check one of the data sets the bench knows by name."""

    name: str
    filename: str
    sha256: str
    features: tuple[str, ...]
    target: str
    class_counts: dict[Any, int]
    url: str
    convert: Callable[[bytes], bytes]
    origin: str = ""
    licence: str = ""

    @property
    def rows(self) -> int:
        return sum(self.class_counts.values())

    @property
    def header(self) -> str:
        return ",".join((*self.features, self.target))


def _lines(raw: bytes) -> list[str]:
    text = raw.decode("utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _canonical(header: str, rows: Sequence[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def iris_from_sklearn(raw: bytes) -> bytes:
    """scikit-learn's ``iris.csv`` (``150,4,setosa,versicolor,virginica`` then rows ending in a
    class number) to the canonical CSV.  A file already in canonical form is returned as is.

    >>> iris_from_sklearn(b"2,4,setosa,versicolor\\n5.1,3.5,1.4,0.2,0\\n7.0,3.2,4.7,1.4,1\\n")
    b'sepal_length,sepal_width,petal_length,petal_width,species\\n5.1,3.5,1.4,0.2,setosa\\n7.0,3.2,4.7,1.4,versicolor\\n'
    """
    header = IRIS.header
    lines = _lines(raw)
    if not lines:
        raise DatasetError("the downloaded iris file is empty")
    if lines[0] == header:
        return _canonical(header, lines[1:])
    count, _n_features, *names = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        *values, cls = line.split(",")
        try:
            rows.append(",".join([*values, names[int(cls)]]))
        except (ValueError, IndexError):
            raise DatasetError(f"unexpected line in the iris origin file: {line!r}") from None
    if not count.isdigit() or int(count) != len(rows):
        raise DatasetError(f"the iris origin file announces {count} rows and has {len(rows)}")
    return _canonical(header, rows)


def banknote_from_uci(raw: bytes) -> bytes:
    """UCI's ``data_banknote_authentication.txt`` (no header) to the canonical CSV.

    >>> banknote_from_uci(b"3.6216,8.6661,-2.8073,-0.44699,0\\r\\n")
    b'variance,skewness,curtosis,entropy,class\\n3.6216,8.6661,-2.8073,-0.44699,0\\n'
    """
    header = BANKNOTE.header
    lines = _lines(raw)
    if lines and lines[0] == header:
        lines = lines[1:]
    return _canonical(header, lines)


IRIS = KnownDataset(
    name="iris",
    filename="iris.csv",
    sha256="9cc1c345c71bcc9b486b74cbf6063fa66f4bb5e0f603a4b3c3471ec2e5e8e355",
    features=("sepal_length", "sepal_width", "petal_length", "petal_width"),
    target="species",
    class_counts={"setosa": 50, "versicolor": 50, "virginica": 50},
    url=(
        "https://raw.githubusercontent.com/scikit-learn/scikit-learn/"
        "1.6.1/sklearn/datasets/data/iris.csv"
    ),
    convert=iris_from_sklearn,
    origin="Fisher's Iris measurements as shipped inside scikit-learn",
    licence="BSD-3-Clause (scikit-learn)",
)

BANKNOTE = KnownDataset(
    name="banknote",
    filename="banknote.csv",
    sha256="a4e6eb57f00dc0c5696badf6553001e8871644b5b98ab1b2869054af1d255125",
    features=("variance", "skewness", "curtosis", "entropy"),
    target="class",
    class_counts={0: 762, 1: 610},
    url=(
        "https://archive.ics.uci.edu/ml/machine-learning-databases/00267/"
        "data_banknote_authentication.txt"
    ),
    convert=banknote_from_uci,
    origin="UCI Machine Learning Repository, banknote authentication (dataset 267)",
    licence="CC BY 4.0",
)

KNOWN: dict[str, KnownDataset] = {d.name: d for d in (IRIS, BANKNOTE)}


# --------------------------------------------------------------------------------------------
# places


def packaged_dir() -> Path:
    """The folder inside the installed package that holds the shipped Iris and Banknote."""
    return Path(str(importlib.resources.files("oml").joinpath("data")))


def data_dir_from_env() -> Path | None:
    value = os.environ.get("OML_DATA_DIR")
    return Path(value).expanduser() if value else None


def default_cache_dir() -> Path:
    """``$OML_CACHE_DIR/datasets``, else ``$XDG_CACHE_HOME/oml/datasets``, else ``~/.cache/...``."""
    root = os.environ.get("OML_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "datasets"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "oml" / "datasets"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _check_file(path: Path, spec: KnownDataset, *, in_cache: bool) -> str:
    """The file's sha256 if it is the canonical one (or, in the cache, one verified at fetch)."""
    actual = sha256_of(path)
    if actual == spec.sha256:
        return actual
    if in_cache and _sidecar(path).is_file():
        try:
            record = json.loads(_sidecar(path).read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("sha256") == actual:
            return actual
    hint = (
        "delete it to fetch it again"
        if in_cache
        else "point --data-dir / OML_DATA_DIR at an unmodified copy"
    )
    raise DatasetError(
        f"checksum mismatch for {spec.name} at {path}: sha256 {actual}, expected {spec.sha256} "
        f"(the canonical {spec.filename}); {hint}"
    )


def check_shape(ds: Dataset, spec: KnownDataset) -> None:
    """Row count, column names and class counts of a parsed known data set."""
    if ds.features != list(spec.features) or ds.target != spec.target:
        raise DatasetError(
            f"{spec.name}: columns {[*ds.features, ds.target]}, expected {spec.header.split(',')}"
        )
    counts = dict(Counter(ds.y))
    if ds.n != spec.rows or counts != spec.class_counts:
        raise DatasetError(
            f"{spec.name}: {ds.n} rows with class counts {counts}, "
            f"expected {spec.rows} rows with {spec.class_counts}"
        )


def fetch(spec: KnownDataset, cache_dir: Path, url: str | None = None) -> Path:
    """Download ``spec`` from its origin (or ``url``), convert, verify and store it in the cache."""
    url = url or spec.url
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DatasetError(f"refusing to fetch {url!r}: only http, https and file URLs")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
            raw = response.read(MAX_DOWNLOAD_BYTES + 1)
    except OSError as exc:
        raise DatasetError(f"could not fetch {spec.name} from {url}: {exc}") from exc
    if len(raw) > MAX_DOWNLOAD_BYTES:
        raise DatasetError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes; not {spec.name}")
    canonical = spec.convert(raw)
    digest = hashlib.sha256(canonical).hexdigest()
    ds = parse_csv(canonical.decode(), spec.target, name=spec.name, task="classification")
    check_shape(ds, spec)  # raises if the conversion did not give the expected table

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / spec.filename
    if digest != spec.sha256:
        record = {
            "sha256": digest,
            "canonical_sha256": spec.sha256,
            "verified_by": "shape and class counts",
            "url": url,
        }
        _sidecar(path).write_text(json.dumps(record, indent=2) + "\n")
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{spec.filename}.")
    with os.fdopen(fd, "wb") as f:
        f.write(canonical)
    Path(tmp).replace(path)
    return path


def locate(
    name: str,
    *,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    download: bool = True,
    url: str | None = None,
    packaged: bool = True,
) -> tuple[Path, str]:
    """Path and sha256 of known data set ``name``: data directory, package, cache, origin."""
    try:
        spec = KNOWN[name]
    except KeyError:
        raise DatasetError(
            f"unknown data set {name!r}; known: {', '.join(KNOWN)} (or use --csv PATH --target COL)"
        ) from None
    data_dir = data_dir if data_dir is not None else data_dir_from_env()
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    looked: list[str] = []
    if data_dir is not None:
        path = data_dir / spec.filename
        if path.is_file():
            return path, _check_file(path, spec, in_cache=False)
        looked.append(str(path))
    if packaged and url is None:
        path = packaged_dir() / spec.filename
        if path.is_file():
            return path, _check_file(path, spec, in_cache=False)
        looked.append(str(path))
    path = cache_dir / spec.filename
    if path.is_file():
        return path, _check_file(path, spec, in_cache=True)
    looked.append(str(path))
    if not download:
        raise DatasetError(
            f"{name} not found (looked in {', '.join(looked)}) and downloading is off; "
            "set --data-dir or OML_DATA_DIR to a folder holding it"
        )
    path = fetch(spec, cache_dir, url)
    return path, sha256_of(path)


def load(
    name: str,
    *,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    download: bool = True,
    url: str | None = None,
    packaged: bool = True,
) -> Dataset:
    """Known data set ``name``, verified.  See the module docstring for where it is looked for.

    >>> load("iris").n, load("banknote").classes
    (150, [0, 1])
    """
    path, digest = locate(
        name, data_dir=data_dir, cache_dir=cache_dir, download=download, url=url,
        packaged=packaged,
    )  # fmt: skip
    spec = KNOWN[name]
    ds = parse_csv(
        path.read_text(), spec.target, name=name, task="classification", source=str(path)
    )
    check_shape(ds, spec)
    return replace(ds, sha256=digest)


# --------------------------------------------------------------------------------------------
# parsing


def load_csv(path: Path, target: str, *, task: Task | Literal["auto"] = "auto") -> Dataset:
    """Any CSV with a header line; every column but ``target`` must be numeric."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    ds = parse_csv(text, target, name=path.stem, task=task, source=str(path))
    return replace(ds, sha256=sha256_of(path))


def parse_csv(
    text: str,
    target: str,
    *,
    name: str,
    task: Task | Literal["auto"] = "auto",
    source: str = "",
) -> Dataset:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{name}: the file is empty") from None
    rows = [row for row in reader if any(cell.strip() for cell in row)]
    return from_rows(name, header, rows, target=target, task=task, source=source)


def from_rows(
    name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    target: str,
    task: Task | Literal["auto"] = "auto",
    source: str = "",
) -> Dataset:
    """Build a data set from string cells (the header line first taken off)."""
    header = list(header)
    if target not in header:
        raise DatasetError(f"{name}: no column {target!r}; columns are {', '.join(header)}")
    if len(set(header)) != len(header):
        raise DatasetError(f"{name}: duplicate column names in {header}")
    t = header.index(target)
    features = [h for i, h in enumerate(header) if i != t]
    if not features:
        raise DatasetError(f"{name}: no feature columns besides {target!r}")
    if not rows:
        raise DatasetError(f"{name}: no data rows")
    X: list[dict[str, float]] = []
    raw_targets: list[str] = []
    for line_no, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetError(
                f"{name}: line {line_no} has {len(row)} cells, the header has {len(header)}"
            )
        x = {}
        for i, cell in enumerate(row):
            if i == t:
                continue
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DatasetError(
                    f"{name}: line {line_no}, column {header[i]!r}: {cell!r} is not a finite "
                    "number (features must be numeric)"
                )
            x[header[i]] = value
        X.append(x)
        raw_targets.append(row[t].strip())
    if task == "auto":
        task = guess_task(raw_targets)
    y = parse_targets(raw_targets, task, name)
    return Dataset(name=name, features=features, target=target, task=task, X=X, y=y, source=source)


def _as_float(s: str) -> float | None:
    try:
        value = float(s)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def guess_task(targets: Sequence[str]) -> Task:
    """Regression if every target is a number and they are not a handful of whole numbers.

    >>> guess_task(["0", "1", "1"]), guess_task(["0.5", "1"]), guess_task(["a", "b"])
    ('classification', 'regression', 'classification')
    """
    values = [_as_float(s) for s in targets]
    if any(v is None for v in values):
        return "classification"
    whole = all(float(v).is_integer() for v in values if v is not None)
    return "classification" if whole and len(set(values)) <= 20 else "regression"


def parse_targets(targets: Sequence[str], task: Task, name: str) -> list[Any]:
    """Regression: floats.  Classification: ints if every label is an integer, else strings."""
    if task == "regression":
        out = [_as_float(s) for s in targets]
        bad = next((s for s, v in zip(targets, out, strict=True) if v is None), None)
        if bad is not None:
            raise DatasetError(f"{name}: regression target {bad!r} is not a finite number")
        return out
    try:
        return [int(s) for s in targets]
    except ValueError:
        return list(targets)

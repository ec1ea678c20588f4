"""Read raw rows from every supported source, one `(row_number, dict)` at a time.

Sources, tried in this order:
- a deeplake URI (`hub://`, `al://`, `s3://`, `gcs://`, `azure://` ...): `deeplake.open_read_only`,
  with the token from `ACTIVELOOP_TOKEN` when set;
- a local file, recognised by content (gzip and Parquet by their magic bytes, JSON by its first character)
  whatever its name: JSON Lines or one JSON array, gzipped or not; Parquet; else `.csv` by name;
- a local directory: a deeplake 4 dataset (has `_deeplake_log/`), a `datasets` `save_to_disk`
  directory (Dataset or DatasetDict, then `split` picks one), else `datasets.load_dataset(dir)`;
- an `org/name` id: `datasets.load_dataset(id, split=split)` from the Hugging Face hub;
- an `hf://datasets/org/name/path/file.jsonl.gz` URL: one JSON file of a hub dataset (e.g. HH-RLHF's
  `harmless-base/train.jsonl.gz`), read by `datasets`' json builder.

Row numbers are 1-based: the line number for JSON Lines, the record index otherwise.
Problems are `DataError`s whose one-line message names the source, the row and the problem.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .config import ConfigError, regular_file

DEEPLAKE_SCHEMES = ("hub://", "al://", "s3://", "gcs://", "gs://", "azure://", "az://")
HF_FILES = "hf://"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
# A name ending like a file is a local path, never a hub id (`data/train.csv` mistyped).
_FILE_SUFFIXES = (*_JSON_SUFFIXES, ".parquet", ".csv", ".gz", ".txt", ".tsv", ".arrow")
_BATCH = 4096  # deeplake rows read per column slice


class DataError(ValueError):
    """A data problem, on one line: `<source> <unit> <n>: <problem>`."""

    def __init__(self, source: str, problem: str, row: int | None = None, unit: str = "row"):
        self.source, self.row, self.problem = str(source), row, " ".join(str(problem).splitlines()).strip()
        where = self.source if row is None else f"{self.source} {unit} {row}"
        super().__init__(f"{where}: {self.problem}")


def scan(source: str, split: str = "train", max_rows: int = 0) -> tuple[str, Iterator[tuple[int, dict | DataError]]]:
    """`(unit, rows)`: rows yield `(n, record)`, or `(n, DataError)` for an unreadable row.

    A problem with the whole source (missing, unreadable, unknown split) raises `DataError`,
    here or, for sources opened lazily (datasets, deeplake), when `rows` is first iterated.
    """
    unit, rows = _open(str(source), split)
    return unit, _limit(rows, max_rows)


def is_remote(source: str) -> bool:
    """A deeplake URI, a hub file URL, or a hub id that is not a local path: not checked before a run."""
    source = str(source)
    if source.startswith((*DEEPLAKE_SCHEMES, HF_FILES)):
        return True
    if Path(source).exists() or source.lower().endswith(_FILE_SUFFIXES):
        return False
    # `data/train` with a local `data/` folder is a mistyped path too.
    return bool(_HUB_ID.match(source)) and not Path(source.split("/")[0]).is_dir()


def read_rows(source: str, split: str = "train", max_rows: int = 0) -> Iterator[tuple[int, dict]]:
    """`(row_number, dict)` for each row of `source`; raises `DataError` on the first bad row."""
    _, rows = scan(source, split, max_rows)
    for n, row in rows:
        if isinstance(row, DataError):
            raise row
        yield n, row


def read_jsonl(path: str | Path) -> list[dict]:
    return [row for _, row in read_rows(str(path))]


def read_split(dataset_dir: str | Path, split: str) -> list[dict]:
    """The `train` or `eval` rows of a dataset artifact written by the data stage."""
    return read_jsonl(Path(dataset_dir) / f"{split}.jsonl")


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """Write atomically: a temporary file in the same directory, then `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(tmp, "wt", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _limit(rows, max_rows):
    count = 0
    for n, row in rows:
        if max_rows and count >= max_rows:
            return
        count += not isinstance(row, DataError)
        yield n, row


def _open(source: str, split: str):
    if source.startswith(DEEPLAKE_SCHEMES):
        return "row", _deeplake_rows(source)
    if source.startswith(HF_FILES):
        return "row", _hf_rows(source, split, builder="json")
    path = Path(source)
    if path.exists() and not path.is_dir():  # a FIFO or device too: peek refuses it
        opener, head = peek(source)
        name = path.name.lower()
        if head.startswith((b"[", b"{")) or (not head and name.endswith(_JSON_SUFFIXES)):
            return _json_rows(source, opener, head)
        if head.startswith(b"PAR1") or name.endswith(".parquet"):
            return "row", _hf_rows(source, split, builder="parquet")
        if name.endswith(".csv"):
            return "row", _hf_rows(source, split, builder="csv")
        if name.endswith(_JSON_SUFFIXES):  # not JSON after all: the first line's error
            return _json_rows(source, opener, head)
        raise DataError(
            source, "unsupported file type (expected JSON Lines or a JSON array, gzipped or not, Parquet or .csv)"
        )
    if path.is_dir():
        if (path / "_deeplake_log").is_dir():
            return "row", _deeplake_rows(source)
        if (path / "dataset_meta.json").is_file():
            raise DataError(source, "a deeplake 3 dataset: convert it to deeplake 4 with deeplake.convert(src, dst)")
        return "row", _hf_rows(source, split)
    if is_remote(source):
        return "row", _hf_rows(source, split)
    raise DataError(source, "no such file or directory, and not a hub id (org/name) or deeplake URI")


def peek(source: str | Path):
    """`(opener, head)`: gzip.open for a gzip file (by its magic bytes, whatever its name), else open; the
    first bytes of the (decompressed) content without a BOM and leading whitespace."""
    try:
        regular_file(source, "it")  # a FIFO would block the open
        with open(source, "rb") as f:
            opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
        with opener(source, "rb") as f:
            return opener, f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except ConfigError as err:
        raise DataError(source, str(err).removeprefix("it ")) from None
    except (OSError, EOFError) as err:
        raise DataError(source, f"cannot read the file: {err}") from None


def _json_rows(source: str, opener, head: bytes):
    if head.startswith(b"["):
        return "record", _json_array_rows(source, opener)
    return "line", _jsonl_rows(source, opener)


def _jsonl_rows(source, opener):
    try:
        with opener(source, "rb") as f:
            for n, raw in enumerate(f, 1):
                raw = raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw
                if raw.strip():  # blank lines are skipped but still counted
                    yield n, _parse_line(raw, source, n)
    except (OSError, EOFError) as err:  # e.g. a truncated or corrupt gzip stream
        raise DataError(source, f"cannot read the file: {err}") from None


def _parse_line(raw: bytes, source: str, n: int):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return DataError(source, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})", n, "line")
    try:
        row = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        return DataError(source, f"malformed JSON ({err.msg} at column {err.colno})", n, "line")
    except _DuplicateKey as err:
        return DataError(source, f"key {str(err)!r} given twice", n, "line")
    if not isinstance(row, dict):
        return DataError(source, f"expected a JSON object, got {type(row).__name__}", n, "line")
    return row


class _DuplicateKey(ValueError):
    """A JSON object with a key twice: `json` would keep the last value silently."""


def _unique_keys(pairs: list) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _json_array_rows(source, opener):
    try:
        with opener(source, "rb") as f:
            rows = json.loads(f.read().decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except (OSError, EOFError) as err:
        raise DataError(source, f"cannot read the file: {err}") from None
    except UnicodeDecodeError as err:
        raise DataError(source, f"not valid UTF-8 (byte offset {err.start})") from None
    except json.JSONDecodeError as err:
        raise DataError(source, f"malformed JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except _DuplicateKey as err:
        raise DataError(source, f"a record has the key {str(err)!r} twice") from None
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            row = DataError(source, f"expected a JSON object, got {type(row).__name__}", n, "record")
        yield n, row


def _hf_rows(source: str, split: str, builder: str | None = None):
    import datasets

    path = Path(source)
    try:
        if builder:  # a local file loads in moments: no progress bar, and the error once, in the DataError
            datasets.disable_progress_bars()
            with _silenced("datasets"):
                ds = datasets.load_dataset(builder, data_files=source, split="train")
        elif (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            ds = datasets.load_from_disk(source)
        else:
            if path.is_dir():
                _check_plain_folder(path, split)
            ds = datasets.load_dataset(source, split=split)
    except DataError:
        raise
    except Exception as err:  # the hub and the builders raise many types
        kind = {"csv": "a CSV file", "parquet": "a Parquet file"}.get(builder) or (
            "a dataset directory" if path.is_dir() else "a Hugging Face hub dataset"
        )
        cause = err.__cause__ or err  # datasets wraps the parser's error in a DatasetGenerationError
        raise DataError(source, f"could not be loaded as {kind}: {type(cause).__name__}: {cause}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(source, f"no split {split!r} (splits: {', '.join(ds)}; set data.split)")
        ds = ds[split]
    yield from enumerate(ds, 1)


# A plain folder of data files: `datasets` builds it with the builder of its most common file type and
# drops the others without a word, and takes its splits from the file names.
_KINDS = {".jsonl": "JSON", ".json": "JSON", ".csv": "CSV", ".parquet": "Parquet", ".arrow": "Arrow", ".txt": "text"}


def _check_plain_folder(path: Path, split: str) -> None:
    from datasets.data_files import get_data_patterns

    kinds: dict[str, list[str]] = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        kind = _KINDS.get("".join(f.suffixes[-2:-1]) if f.suffix == ".gz" else f.suffix)
        if kind:
            kinds.setdefault(kind, []).append(f.name)
    if len(kinds) > 1:
        found = "; ".join(
            f"{kind}: {', '.join(names[:2])}{', ...' if len(names) > 2 else ''}" for kind, names in kinds.items()
        )
        raise DataError(
            str(path),
            f"holds files of {len(kinds)} types ({found}), and a folder is read as one type: "
            "convert them to one type or give one file",
        )
    splits = [str(s) for s in get_data_patterns(str(path))]
    if split.split("[")[0] not in splits:
        raise DataError(
            str(path),
            f"no split {split!r} in this folder (its file names give: {', '.join(splits)}): set "
            f"data.split to one of them, or name the files {split}-*.jsonl",
        )


@contextlib.contextmanager
def _silenced(logger: str):
    log = logging.getLogger(logger)
    level, log.level = log.level, logging.CRITICAL
    try:
        yield
    finally:
        log.setLevel(level)


def _deeplake_rows(source: str):
    import deeplake

    try:
        ds = deeplake.open_read_only(source, token=os.environ.get("ACTIVELOOP_TOKEN"))
    except Exception as err:  # deeplake raises its own types for auth, paths, versions
        raise DataError(source, f"could not open the deeplake dataset: {type(err).__name__}: {err}") from None
    columns = [c.name for c in ds.schema.columns]
    for start in range(0, len(ds), _BATCH):
        stop = min(start + _BATCH, len(ds))
        values = {c: _to_python(ds[c][start:stop]) for c in columns}
        for i in range(stop - start):
            yield start + i + 1, {c: values[c][i] for c in columns}


def _to_python(values):
    """Text columns come back as lists of str, numeric ones as numpy arrays."""
    return values.tolist() if hasattr(values, "tolist") else [v.tolist() if hasattr(v, "tolist") else v for v in values]

"""List layouts: text lists of feature files (RTFM, MGFN, CLIP-TSA, UR-DMU) and CSV lists.

Text lists (``.list`` or ``.txt``), one feature file per line:

```
/home/someone/SH_Train_ten_crop_i3d/01_0014_i3d.npy     (T, 10, D) ten crops, or (T, D)
...
```

- Train list: the field's code puts anomalous videos first and cuts the list at a known
  count (RTFM/MGFN: ShanghaiTech 63, UCF-Crime 810, XD-Violence 9525 lines = 1905 videos x 5
  crops). Give that count as `train_anomalous` (lines, as those programs count them); without
  it, each video's label comes from its file name (`groundtruth.label_from_name`).
- Test list: found next to the train list (``...train...`` -> ``...test...``, or
  ``NAME.list`` -> ``NAME-test.list`` / ``NAME_test.list``) unless given. Its labels come from
  the file names, else from the ground truth (anomalous when any covered frame is).
- Ground truth: given, or the one ``gt*.npy`` next to the train list: the RTFM/MGFN
  ``gt-*.npy`` holds the frame labels of all test videos concatenated in list order, 16 per
  segment. Any other source of `groundtruth.load_ground_truth` works too.
- Lines may name per-crop files (``VIDEO__K.npy``): the crops of one video are grouped.
- Paths are used as written; relative ones are relative to the list's folder. `list_root`
  re-roots them: ``OLD=NEW`` replaces the prefix OLD by NEW; a plain folder NEW keeps the
  shortest trailing part of each listed path that exists under NEW (``NEW/file.npy``, else
  ``NEW/parent/file.npy``, ...).

CSV lists: the same, with a label per line: ``path,label`` (an optional header names the two
columns; labels are 0/1 or normal/anomalous).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from .catalog import Catalog, VideoEntry, group_crops
from .groundtruth import label_from_name, video_name
from .gtattach import read_ground_truth
from .registry import register_format

LIST_SUFFIXES = (".list", ".txt")
_LABEL_WORDS = {"normal": 0, "abnormal": 1, "anomalous": 1, "anomaly": 1}


def is_list_file(path: Path) -> bool:
    """Whether `path` is a text list file (by its suffix)."""
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES


def is_csv_file(path: Path) -> bool:
    """Whether `path` is a CSV list file (by its suffix)."""
    return path.is_file() and path.suffix.lower() == ".csv"


def find_test_list(train_list: Path) -> Path | None:
    """The test list that sits next to a train list by the field's naming habits."""
    name, suffix = train_list.stem, train_list.suffix
    candidates = []
    for word, test_word in (("train", "test"), ("Train", "Test"), ("TRAIN", "TEST")):
        if word in name:
            candidates.append(name.replace(word, test_word))
    candidates += [f"{name}-test", f"{name}_test", f"{name}-Test", f"{name}_Test"]
    for stem in candidates:
        path = train_list.with_name(stem + suffix)
        if path.is_file() and path != train_list:
            return path
    return None


def find_ground_truth(catalog: Catalog, folder: Path) -> Path | None:
    """The single `gt*.npy` in a folder; several are ambiguous and reported, none is None."""
    found = sorted(p for p in folder.glob("gt*.npy") if p.is_file())
    if len(found) > 1:
        catalog.warn(
            "gt-missing",
            folder,
            f"several ground-truth files ({', '.join(p.name for p in found)}): none used; "
            "give one as the ground-truth source",
        )
        return None
    return found[0] if found else None


def reroot(text: str, list_file: Path, list_root: str | None) -> Path:
    """Where a listed path points, after re-rooting (module docstring)."""
    if list_root:
        old, sep, new = list_root.partition("=")
        if sep:
            return Path(new + text[len(old) :]) if text.startswith(old) else Path(text)
        root, parts = Path(list_root), Path(text).parts
        for keep in range(1, len(parts)):
            candidate = root.joinpath(*parts[-keep:])
            if candidate.exists():
                return candidate
        return root / Path(text).name
    path = Path(text)
    return path if path.is_absolute() else list_file.parent / path


def _read_lines(catalog: Catalog, path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        catalog.error("unreadable", path, f"cannot read the list ({exc})")
        return []
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        catalog.error("layout", path, "list is empty")
    return lines


def _parse_label(text: str) -> int | None:
    value = text.strip().lower()
    if value in _LABEL_WORDS:
        return _LABEL_WORDS[value]
    if re.fullmatch(r"[01](\.0*)?", value):
        return int(float(value))
    return None


def _read_csv(catalog: Catalog, path: Path) -> list[tuple[int, str, int | None]]:
    """(line, path, label) rows of a `path,label` CSV; bad rows are reported and skipped."""
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        catalog.error("unreadable", path, f"cannot read the CSV list ({exc})")
        return []
    path_col, label_col, first = 0, 1, 0
    if rows and rows[0] and len(rows[0]) >= 2 and _parse_label(rows[0][1]) is None:
        header = [cell.strip().lower() for cell in rows[0]]
        if "path" in header and "label" in header:
            path_col, label_col = header.index("path"), header.index("label")
            first = 1
        elif rows[0][1].strip().lower() == "label":
            first = 1
    out = []
    for number, row in enumerate(rows[first:], first + 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{number}"
        if len(row) <= max(path_col, label_col):
            catalog.error("unreadable", where, f"expected path,label, got {','.join(row)!r}")
            continue
        label_text = row[label_col].strip()
        label = _parse_label(label_text) if label_text else None
        if label_text and label is None:
            catalog.error(
                "unlabelled",
                where,
                f"label {label_text!r} is not 0/1 or normal/anomalous",
            )
            continue
        out.append((number, row[path_col].strip(), label))
    if not out and not catalog.errors:
        catalog.error("layout", path, "CSV list is empty")
    return out


def _add_videos(
    catalog: Catalog,
    split: str,
    list_file: Path,
    rows: list[tuple[int, str, int | None]],
    list_root: str | None,
) -> None:
    """Group rows (line, path, label) into videos; a video's crops must agree on the label.
    The list's folder, and the re-rooting folder, hold the dataset (`Catalog.data_roots`)."""
    for root in (list_file.parent, list_root.partition("=")[2] or list_root if list_root else None):
        if root and Path(root) not in catalog.data_roots:
            catalog.data_roots.append(Path(root))
    labels: dict[Path, int | None] = {}
    items = []
    for number, text, label in rows:
        path = reroot(text, list_file, list_root)
        labels[path] = label
        items.append((path, f"{list_file}:{number}"))
    for name, files, origin in group_crops(catalog, items):
        found = {labels[f] for f in files}
        if len(found) > 1:
            catalog.error(
                "unlabelled",
                origin,
                f"the crops of video {name!r} have different labels {sorted(found, key=str)} "
                "(a train_anomalous count must not cut through a video's crops)",
            )
            continue
        label = found.pop()
        if label is None:
            label = label_from_name(name)
        catalog.videos.append(VideoEntry(name, split, label, files, origin))


def _train_rows(
    catalog: Catalog, path: Path, train_anomalous: int | None
) -> list[tuple[int, str, int | None]]:
    lines = _read_lines(catalog, path)
    if train_anomalous is None:
        return [(n, text, None) for n, text in lines]
    if not 0 < train_anomalous < len(lines):
        catalog.error(
            "layout",
            path,
            f"train_anomalous is {train_anomalous}, but the list has {len(lines)} lines: the "
            "anomalous head must leave normal videos after it",
        )
        return [(n, text, None) for n, text in lines]
    rows: list[tuple[int, str, int | None]] = []
    for index, (number, text) in enumerate(lines):
        label = 1 if index < train_anomalous else 0
        by_name = label_from_name(video_name(text))
        if by_name is not None and by_name != label:
            catalog.warn(
                "label-conflict",
                f"{path}:{number}",
                f"line {number} is {'inside' if label else 'after'} the first {train_anomalous} "
                f"(anomalous) lines, but its name says {'anomalous' if by_name else 'normal'}",
            )
        rows.append((number, text, label))
    return rows


def _attach_ground_truth(
    catalog: Catalog, ground_truth: str | Path | None, folder: Path, exclude: set[Path]
) -> None:
    path = Path(ground_truth) if ground_truth else find_ground_truth(catalog, folder)
    if path is not None and path not in exclude:
        read_ground_truth(catalog, path)


def _add_test_videos(
    catalog: Catalog,
    train_file: Path,
    test_list: str | Path | None,
    kind: str,
    read_rows: Callable[[Path], list[tuple[int, str, int | None]]],
    list_root: str | None,
) -> None:
    """The test videos of a list layout: from `test_list`, or the test file next to the train
    file (`find_test_list`); a missing one is reported in the catalog."""
    test_path = Path(test_list) if test_list else find_test_list(train_file)
    if test_path is None:
        catalog.error("layout", train_file, f"no test {kind} found next to it; name the test list")
    elif not test_path.is_file():
        catalog.error("missing-file", test_path, f"test {kind} not found")
    else:
        catalog.notes.append(f"test list: {test_path}")
        _add_videos(catalog, "test", test_path, read_rows(test_path), list_root)


@register_format(
    "list",
    detect=is_list_file,
    looks_for="a .list/.txt",
    description="a text list of feature files (RTFM, MGFN, UR-DMU)",
)
def catalog_list(
    train_list: str | Path,
    *,
    test_list: str | Path | None = None,
    ground_truth: str | Path | None = None,
    list_root: str | None = None,
    train_anomalous: int | None = None,
) -> Catalog:
    """Index a text-list layout (module docstring).

    Args:
        train_list: the train list file.
        test_list: the test list; None finds it next to the train list.
        ground_truth: a ground-truth source; None uses the one `gt*.npy` next to the list.
        list_root: re-root the listed paths: ``NEW`` or ``OLD=NEW``.
        train_anomalous: the number of leading anomalous lines of the train list.

    Raises:
        DataError: the train list does not exist.
    """
    train_list = Path(train_list)
    if not train_list.is_file():
        raise DataError(f"{train_list}: list file not found")
    catalog = Catalog("list", train_list)
    catalog.label_hint = (
        "its file name follows no dataset's naming; give train_anomalous, the number of "
        "anomalous lines at the head of the train list"
    )
    catalog.labels_from_gt.add("test")
    rows = _train_rows(catalog, train_list, train_anomalous)
    _add_videos(catalog, "train", train_list, rows, list_root)
    _add_test_videos(
        catalog,
        train_list,
        test_list,
        "list",
        lambda path: [(n, text, None) for n, text in _read_lines(catalog, path)],
        list_root,
    )
    _attach_ground_truth(catalog, ground_truth, train_list.parent, {train_list})
    return catalog


@register_format(
    "csv",
    detect=is_csv_file,
    looks_for="a .csv list",
    description="a CSV list of feature files with their labels (path,label)",
)
def catalog_csv(
    train_csv: str | Path,
    *,
    test_list: str | Path | None = None,
    ground_truth: str | Path | None = None,
    list_root: str | None = None,
) -> Catalog:
    """Index a CSV-list layout: `path,label` files for train and test (module docstring).

    Args:
        train_csv: the train CSV.
        test_list: the test CSV; None finds it next to the train CSV.
        ground_truth: a ground-truth source; None uses the one `gt*.npy` next to the CSV.
        list_root: re-root the listed paths: ``NEW`` or ``OLD=NEW``.

    Raises:
        DataError: the train CSV does not exist.
    """
    train_csv = Path(train_csv)
    if not train_csv.is_file():
        raise DataError(f"{train_csv}: CSV list not found")
    catalog = Catalog("csv", train_csv)
    catalog.label_hint = "give it a 0/1 label in the CSV's label column"
    catalog.labels_from_gt.add("test")
    _add_videos(catalog, "train", train_csv, _read_csv(catalog, train_csv), list_root)
    _add_test_videos(
        catalog, train_csv, test_list, "CSV", lambda path: _read_csv(catalog, path), list_root
    )
    _attach_ground_truth(catalog, ground_truth, train_csv.parent, {train_csv})
    return catalog


# ---------------------------------------------------------------------- writing

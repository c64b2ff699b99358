"""Per-crop folders: one `.npy` per crop of each video (XD-Violence, UR-DMU, DeepMIL).

```
ROOT/train/VIDEO__0.npy ... VIDEO__4.npy     (T, D) each: five (or ten) crops of VIDEO
ROOT/test/VIDEO__0.npy ...
ROOT/annotations.txt                          ground truth (optional; see below)
```

The split folders may also be called ``Train``/``Test``, ``training``/``testing`` or, as in
the XD-Violence download, ``RGB``/``RGBTest``. A video may also be one whole file
``VIDEO.npy`` of shape (T, D) or (T, C, D). The crops of a video are read lazily, as one
(T, C, D) array (`arrays.CropStack`), never stacked in memory.

Video labels come from the file names (`groundtruth.label_from_name`: XD-Violence's
``label_A`` is normal; UCF-Crime and ShanghaiTech names too). Ground truth, unless given:
``annotations.txt`` (XD-Violence), ``Temporal_Anomaly_Annotation*.txt`` (UCF-Crime),
``test_frame_mask/`` (ShanghaiTech), ``frame_labels.npz`` or ``frame_labels.json`` in ROOT.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .catalog import Catalog, VideoEntry, group_crops
from .groundtruth import label_from_name
from .gtattach import read_ground_truth
from .registry import register_format

SPLIT_FOLDERS = {
    "train": ("train", "Train", "training", "RGB"),
    "test": ("test", "Test", "testing", "RGBTest"),
}
GROUND_TRUTH_NAMES = (
    "annotations.txt",
    "Temporal_Anomaly_Annotation*.txt",
    "test_frame_mask",
    "frame_labels.npz",
    "frame_labels.json",
)


def split_folder(root: Path, split: str) -> Path | None:
    """The folder of a split ("train"/"test") under `root`, by any of its usual names."""
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    return None


def is_crops_layout(root: Path) -> bool:
    """A folder with a train and a test folder holding `.npy` files."""
    if not root.is_dir():
        return False
    folders = [split_folder(root, split) for split in SPLIT_FOLDERS]
    return all(f is not None and next(f.glob("*.npy"), None) is not None for f in folders)


def find_ground_truth(root: Path) -> Path | None:
    """The first of the usual ground-truth files (`GROUND_TRUTH_NAMES`) found in `root`."""
    for pattern in GROUND_TRUTH_NAMES:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    return None


@register_format(
    "crops",
    detect=is_crops_layout,
    looks_for="train/ and test/ folders of .npy files",
    description="per-crop VIDEO__K.npy files in train/ and test/ folders (XD-Violence style)",
)
def catalog_crops(root: str | Path, *, ground_truth: str | Path | None = None) -> Catalog:
    """Index a per-crop folder layout (module docstring).

    Args:
        root: the folder holding the split folders.
        ground_truth: a ground-truth source; None looks for the usual files in `root`.

    Raises:
        DataError: `root` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    catalog = Catalog("crops", root)
    catalog.data_roots.append(root)
    catalog.label_hint = (
        "its file name follows no dataset's naming (XD-Violence label_A, UCF-Crime, "
        "ShanghaiTech); list the files with their labels in a CSV (path,label) instead"
    )
    for split in SPLIT_FOLDERS:
        folder = split_folder(root, split)
        if folder is None:
            catalog.error(
                "layout",
                root,
                f"no {split} folder (looked for {', '.join(SPLIT_FOLDERS[split])})",
            )
            continue
        files = sorted(folder.glob("*.npy"))
        if not files:
            catalog.error("layout", folder, f"no .npy feature files in the {split} folder")
        catalog.notes.append(f"{split}: {folder}")
        for name, paths, origin in group_crops(catalog, ((p, str(p)) for p in files)):
            catalog.videos.append(VideoEntry(name, split, label_from_name(name), paths, origin))
    path = Path(ground_truth) if ground_truth else find_ground_truth(root)
    if path is not None:
        read_ground_truth(catalog, path)
        if catalog.ground_truth is not None and catalog.ground_truth.kind == "concatenated":
            catalog.error(
                "layout",
                path,
                "a concatenated ground truth follows the order of a test list, which a folder "
                "does not have: use a list layout with its test list, or a per-video source",
            )
            catalog.ground_truth = None
    return catalog

"""Ground truth meets the catalogue: read a source, attach frame labels to the videos, and
check each against its segment count under the catalogue's tail policy."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .catalog import ERROR, WARNING, Catalog, VideoEntry
from .groundtruth import (
    GroundTruth,
    event_labels,
    fit_frame_labels,
    frame_count_mismatch,
    load_ground_truth,
)


def read_ground_truth(catalog: Catalog, path: str | Path) -> None:
    """Make the source at `path` the catalog's ground truth (`groundtruth.load_ground_truth`),
    or report it missing or unreadable."""
    path = Path(path)
    try:
        catalog.ground_truth = load_ground_truth(path)
    except DataError as exc:
        catalog.report("missing-file" if not path.exists() else "unreadable", path, exc)
        return
    catalog.notes.append(f"ground truth: {path} ({catalog.ground_truth.kind})")


def apply_ground_truth(catalog: Catalog) -> None:
    """Attach frame labels to the videos and check each against its segment count.

    Per-video labels with a frame count are checked with `fit_frame_labels`; event annotations
    become labels over the covered frames; a concatenated array is split in test-list order
    at 16 T_i labels per video. Test videos the source does not cover are reported.
    """
    gt = catalog.ground_truth
    frames_per_segment, tail = catalog.frames_per_segment, catalog.tail
    tests = catalog.split("test")
    if gt is None:
        if tests:
            catalog.warn(
                "gt-missing",
                catalog.root,
                f"no frame ground truth: the {len(tests)} test videos cannot be evaluated "
                "(give a ground-truth source)",
            )
        return
    for where, message in gt.problems:
        prefix = f"{where}: "
        catalog.error("unreadable", where, message.removeprefix(prefix))
    if gt.concatenated is not None and not _split_concatenated(catalog, gt):
        return
    for video in catalog.videos:
        if video.broken:
            continue
        T = video.segments
        if gt.concatenated is not None:
            pass  # the test videos got their slices above, each exactly 16 T long
        elif gt.frames is not None and video.name in gt.frames:
            labels = gt.frames[video.name]
            mismatch = frame_count_mismatch(labels.size, T, tail, frames_per_segment)
            if mismatch:
                catalog.error(
                    "gt-length",
                    gt.origin(video.name),
                    f"video {video.name!r} ({video.source}) {mismatch}",
                )
                video.broken = True
                continue
            video.frame_labels = fit_frame_labels(labels, T, tail, frames_per_segment)
        elif gt.events is not None and (video.name in gt.events or video.split == "test"):
            spans = gt.events.get(video.name)
            if spans is None:
                if video.label != 0:
                    catalog.error(
                        "gt-missing",
                        gt.source,
                        f"test video {video.name!r} has no annotation (only videos labelled "
                        "normal may be left out of an event list)",
                    )
                    video.broken = True
                    continue
                spans = []  # XD-Violence lists only the videos with events
            labels, notes = event_labels(spans, T, tail, frames_per_segment)
            for is_error, text in notes:
                catalog.add(
                    ERROR if is_error else WARNING,
                    "gt-length",
                    gt.source,
                    f"video {video.name!r}: {text}",
                )
                video.broken = video.broken or is_error
            video.frame_labels = labels
        if video.frame_labels is not None:
            _check_label_agreement(catalog, video, gt.origin(video.name))
    missing = [v for v in tests if v.frame_labels is None and not v.broken]
    for video in missing:
        catalog.error(
            "gt-missing",
            gt.source,
            f"test video {video.name!r} ({video.source}) has no frame labels in it",
        )
        video.broken = True
    if gt.frames is not None:
        # A ground truth of a larger set than the splits use is normal (a subset split): a note
        # for `arnet inspect`, not a problem.
        extra = sorted(gt.names() - {v.name for v in catalog.videos})
        if extra:
            shown = ", ".join(repr(n) for n in extra[:5])
            catalog.notes.append(
                f"{len(extra)} video(s) of the ground truth are in no split: {shown}"
                + (" ..." if len(extra) > 5 else "")
            )


def _split_concatenated(catalog: Catalog, gt: GroundTruth) -> bool:
    """Cut a concatenated ground truth into the test videos' frame labels; False when it
    cannot be (reported)."""
    frames_per_segment = catalog.frames_per_segment
    tests = catalog.split("test")
    if any(v.broken for v in tests):
        catalog.warn(
            "gt-length",
            gt.source,
            "not checked: a concatenated ground truth is cut by the segment counts of all test "
            "videos in list order, and some test videos are unreadable",
        )
        return False
    need = frames_per_segment * sum(v.segments for v in tests)
    labels = gt.concatenated
    assert labels is not None  # called for a concatenated ground truth
    if labels.size != need:
        catalog.error(
            "gt-length",
            gt.source,
            f"holds {labels.size} frame labels, but the {len(tests)} test videos' segments "
            f"cover {need} frames ({frames_per_segment} per segment, in test-list order)",
        )
        for video in tests:
            video.broken = True
        return False
    start = 0
    for video in tests:
        end = start + frames_per_segment * video.segments
        video.frame_labels = labels[start:end]
        start = end
    return True


def _check_label_agreement(catalog: Catalog, video: VideoEntry, source: str) -> None:
    assert video.frame_labels is not None  # called for a video with frame labels
    covered = video.frame_labels[: catalog.frames_per_segment * video.segments]
    anomalous_frames = int(covered.sum())
    if video.label == 1 and anomalous_frames == 0 and video.split == "test":
        catalog.warn(
            "gt-label",
            source,
            f"video {video.name!r} is labelled anomalous, but no frame it covers is anomalous",
        )
    elif video.label == 0 and anomalous_frames:
        catalog.warn(
            "gt-label",
            source,
            f"video {video.name!r} is labelled normal, but {anomalous_frames} of its frames are "
            "anomalous",
        )

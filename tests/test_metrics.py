import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from arnet.errors import DataError
from arnet.evaluation.metrics import expand_to_frames, frame_metrics, segment_label_counts


def test_frame_expansion_of_three_segments():
    out = expand_to_frames(np.array([0.1, 0.5, 0.9]), 16)
    assert out.shape == (48,)
    assert (out[:16] == 0.1).all() and (out[16:32] == 0.5).all() and (out[32:] == 0.9).all()
    assert expand_to_frames(np.array([0.3, 0.4]), 4).tolist() == [0.3] * 4 + [0.4] * 4


def test_segment_label_counts_cut_the_tail():
    labels = np.zeros(16 * 2 + 7, dtype=np.uint8)
    labels[10:20] = 1
    labels[-3:] = 1  # trailing frames belong to no segment
    pos, neg = segment_label_counts(labels, 2, 16)
    assert pos.tolist() == [6, 4] and neg.tolist() == [10, 12]


def test_too_few_frame_labels_is_an_error_naming_the_video():
    with pytest.raises(DataError, match="'v7' has 20 frame labels.*cover 32"):
        segment_label_counts(np.zeros(20), 2, 16, video="v7")


def _random_test_set(seed, n_videos=12, frames_per_segment=16):
    rng = np.random.default_rng(seed)
    scores, frames, labels = {}, {}, {}
    for i in range(n_videos):
        T = int(rng.integers(1, 30))
        anomalous = i % 3 == 0
        s = np.round(rng.random(T), 2)  # rounding makes ties, which AUC must handle alike
        f = np.zeros(
            T * frames_per_segment + int(rng.integers(0, frames_per_segment)), dtype=np.uint8
        )
        if anomalous:
            a = int(rng.integers(0, len(f) - 1))
            f[a : a + int(rng.integers(1, len(f) - a + 1))] = 1
        scores[f"v{i}"], frames[f"v{i}"], labels[f"v{i}"] = s, f, int(anomalous)
    return scores, frames, labels


def _expanded(scores, frames, labels, which, frames_per_segment=16):
    s, y = [], []
    for k, v in scores.items():
        if which is None or labels[k] == which:
            s.append(np.repeat(v, frames_per_segment))
            y.append(frames[k][: len(v) * frames_per_segment])
    return np.concatenate(s), np.concatenate(y)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_metrics_equal_sklearn_on_expanded_frames(seed):
    scores, frames, labels = _random_test_set(seed)
    m = frame_metrics(scores, frames, labels, 16, 0.5)
    s, y = _expanded(scores, frames, labels, None)
    assert m.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m.ap == pytest.approx(average_precision_score(y, s), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.5, labels=[0, 1]).ravel()
    assert m.far_all == pytest.approx(fp / (fp + tn))
    sa, ya = _expanded(scores, frames, labels, 1)
    assert m.auc_anomalous == pytest.approx(roc_auc_score(ya, sa), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(ya, sa >= 0.5, labels=[0, 1]).ravel()
    assert m.far_anomalous == pytest.approx(fp / (fp + tn))
    sn, _ = _expanded(scores, frames, labels, 0)
    assert m.far_normal == pytest.approx((sn >= 0.5).mean())
    assert m.frames == len(y) and m.videos == len(scores)


def test_per_video_rows():
    scores = {"a": np.array([0.2, 0.9]), "n": np.array([0.1, 0.6, 0.3])}
    frames = {"a": np.r_[np.zeros(16), np.ones(16)].astype(np.uint8), "n": np.zeros(50, np.uint8)}
    m = frame_metrics(scores, frames, {"a": 1, "n": 0}, 16, 0.5)
    a, n = m.per_video
    assert (a.name, a.segments, a.frames, a.anomalous_frames) == ("a", 2, 32, 16)
    assert a.auc == 1.0 and a.false_alarm_rate == 0.0 and a.max_score == 0.9
    assert math.isnan(n.auc) and n.false_alarm_rate == pytest.approx(1 / 3)


def test_undefined_metrics_are_nan_not_a_crash():
    scores = {"n": np.array([0.2, 0.7])}
    m = frame_metrics(scores, {"n": np.zeros(32, np.uint8)}, {"n": 0})
    assert math.isnan(m.auc) and math.isnan(m.ap) and math.isnan(m.auc_anomalous)
    assert m.far_normal == 0.5
    assert m.summary()["auc"] is None  # JSON-ready


def test_missing_frame_labels_and_empty_input():
    with pytest.raises(DataError, match="no frame labels for test video 'x'"):
        frame_metrics({"x": np.ones(2)}, {}, {"x": 1})
    with pytest.raises(DataError, match="no scored videos"):
        frame_metrics({}, {}, {})

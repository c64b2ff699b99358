"""Train the reference AR-Net code itself (not an emulation) and score it with arnet's metrics;
and check `arnet --compat reference` against it in lockstep.

    python benchmarks/reference_run.py --reference CHECKOUT --data DIR --iterations 300 \
        --eval-every 100 --seeds 1,2,3,4 --out ref.json
    python benchmarks/reference_run.py --reference CHECKOUT --data DIR --lockstep 50 \
        --seeds 1 --out lockstep.json [--fixture tests/data/reference_lockstep.json]

CHECKOUT is a checkout of github.com/wanboyang/Anomaly_AR_Net_ICME_2020 (never part of
arnet; fetch it yourself). DIR is a dataset in the AR-Net layout (`benchmarks/featuregen.py`,
`benchmarks/suitegen.py` and `arnet synth` write it); it is shown to the reference code under the
name it expects (`shanghaitech`) through a symbolic link.

Training drives the reference's own `main.py` sequence on the CPU: `torch.manual_seed(seed)`,
`model_generater`, `Adam(lr, weight_decay=5e-4)`, its `dataset` behind a shuffled
`DataLoader(batch_size=1, num_workers=1)` (so its Python and NumPy sampling are seeded by torch
in the worker, as in the reference), then its `train.train`. The loader is cut at
`--iterations` batches. Every `--eval-every` iterations the reference tests its model with its
own `test.test`; the scores it returns are evaluated with arnet's frame-level AUC
(`arnet.evaluation.evaluate.evaluate`), and the reference's own `eval.eval_p` figure is kept
beside it as a cross-check.

Lockstep (`--lockstep N`): the reference's dataset draws each batch; the same videos and
segment positions go through `arnet`'s `FeatureDataset.batch` and its `--compat reference`
objective; both models start from the same weights (the reference's, copied across) and the
same torch RNG state before each forward pass (so dropout draws the same masks); loss, its
parts, the model's output and the first gradient are compared at every iteration, each side
then taking its own Adam step.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# What a checkout must hold to be the reference code (file -> a line it defines).
REQUIRED = {
    "main.py": "from train import train",
    "train.py": "def train(",
    "test.py": "def test(",
    "eval.py": "def eval_p(",
    "losses.py": "def KMXMILL_individual(",
    "model.py": "class Model_single(",
    "options.py": "AR_Net",
    "utils.py": "def process_feat_sample(",
    "video_dataset_anomaly_balance_uni_sample.py": "class dataset(",
}
REF_MODULES = ("options", "utils", "losses", "model", "test", "eval", "train",
               "video_dataset_anomaly_balance_uni_sample")  # fmt: skip
DATASET_NAME = "shanghaitech"  # the only name the reference's eval_p reads ground truth for


class BenchError(Exception):
    """A bad input: printed as one line, exit status 2."""


# ---------------------------------------------------------------------- the reference code


def check_reference(path: str | Path) -> Path:
    """The checkout's folder, or BenchError naming what is missing."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise BenchError(f"--reference {path}: no such folder (a checkout of "
                         "wanboyang/Anomaly_AR_Net_ICME_2020)")  # fmt: skip
    for name, marker in REQUIRED.items():
        file = root / name
        if not file.is_file():
            raise BenchError(f"--reference {path}: not the reference AR-Net code ({name} missing)")
        if marker not in file.read_text(errors="replace"):
            raise BenchError(f"--reference {path}: not the reference AR-Net code ({name} has no "
                             f"{marker!r})")  # fmt: skip
    return root.resolve()


def load_reference(path: str | Path) -> SimpleNamespace:
    """Import the reference's modules from `path` (its folder first on sys.path; modules of
    the same names imported before are replaced)."""
    root = check_reference(path)
    for name in REF_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(root))
    try:
        mods = {n: importlib.import_module(n) for n in REF_MODULES}
    finally:
        sys.path.remove(str(root))
    for name, module in mods.items():
        origin = Path(getattr(module, "__file__", "") or "").resolve()
        if origin.parent != root:
            raise BenchError(f"--reference {path}: module {name} came from {origin}, not the "
                             "checkout")  # fmt: skip
    mods["dataset"] = mods.pop("video_dataset_anomaly_balance_uni_sample")
    mods["root"] = root
    return SimpleNamespace(**mods)


def reference_args(ref: SimpleNamespace, dataset_path: Path, dim: int, seed: int,
                   snapshot: int, extra: list[str] = ()) -> argparse.Namespace:  # fmt: skip
    """The reference's options, from its own parser: its defaults plus the data's."""
    return ref.options.parser.parse_args([
        "--dataset_path", str(dataset_path), "--dataset_name", DATASET_NAME,
        "--feature_size", str(dim), "--seed", str(seed), "--snapshot", str(snapshot),
        "--plot", "0", "--feature_pretrain_model", "i3d", "--feature_modal", "combine",
        *extra,
    ])  # fmt: skip


class LoggerStub:
    """The `log_value` the reference calls (tensorboard_logger's); keeps every value."""

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[int, float]]] = {}

    def log_value(self, name: str, value: Any, step: int) -> None:
        value = value.detach() if hasattr(value, "detach") else value
        self.values.setdefault(name, []).append((int(step), float(value)))


def check_data(data: str | Path) -> Path:
    root = Path(data).expanduser().resolve()
    need = ["train_split.txt", "test_split.txt", "GT/video_label.pickle", "GT/frame_label.pickle",
            "features_video/i3d/combine"]  # fmt: skip
    for rel in need:
        if not (root / rel).exists():
            raise BenchError(f"--data {data}: not an AR-Net-layout dataset ({rel} missing)")
    return root


def expose_as_reference(data: Path, work: Path) -> Path:
    """A folder holding `shanghaitech` -> data (the name the reference reads), its path."""
    base = work / "datasets"
    base.mkdir(parents=True, exist_ok=True)
    link = base / DATASET_NAME
    if not link.exists():
        link.symlink_to(data, target_is_directory=True)
    return base


def feature_dim(data: Path) -> int:
    first = next((data / "features_video" / "i3d" / "combine").iterdir())
    return int(np.load(first / "feature.npy", mmap_mode="r").shape[-1])


class Cut:
    """The reference loop's `train_loader`: the shuffled DataLoader's epochs, one after the
    other, cut after `n` batches (the reference's `train` loops over `epochs` x loader)."""

    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[Any]:
        given = 0
        while given < self.n:
            for batch in self.loader:
                yield batch
                given += 1
                if given == self.n:
                    return


def train_reference(ref: SimpleNamespace, data: Path, seed: int, iterations: int,
                    eval_every: int, work: Path, test_set: Any, workers: int = 1,
                    lr: float | None = None) -> dict[str, Any]:  # fmt: skip
    """One seed of the reference's own training; AUC (arnet's and its own) per snapshot."""
    import torch
    from torch.utils.data import DataLoader

    from arnet.evaluation.evaluate import evaluate

    work.mkdir(parents=True, exist_ok=True)
    dataset_path = expose_as_reference(data, work)
    extra = ["--lr", str(lr)] if lr is not None else []
    args = reference_args(ref, dataset_path, feature_dim(data), seed, eval_every, extra)
    save_path = f"seed_{seed}"
    (work / "ckpt" / save_path).mkdir(parents=True, exist_ok=True)
    curve: list[dict[str, Any]] = []
    original_eval = ref.train.eval_p

    def scored_eval(itr: int, dataset: str, predict_dict: dict[str, np.ndarray], logger: Any,
                    save_path: str, args: Any, plot: bool = False, **kw: Any) -> None:  # fmt: skip
        original_eval(itr=itr, dataset=dataset, predict_dict=predict_dict, logger=logger,
                      save_path=save_path, args=args, plot=plot, **kw)  # fmt: skip
        own = logger.values["Test_AUC_all_video"][-1][1]
        ours = evaluate({k: np.asarray(v) for k, v in predict_dict.items()}, test_set).auc
        curve.append({"iteration": int(itr), "auc": float(ours), "auc_reference_eval": own})

    logger = LoggerStub()
    log = io.StringIO()
    cwd = os.getcwd()
    started = time.perf_counter()
    try:
        os.chdir(work)
        ref.train.eval_p = scored_eval
        if workers == 0:  # the sampler runs here: seed its generators (main.py cannot)
            import random

            random.seed(args.seed)
            np.random.seed(args.seed)
        torch.manual_seed(args.seed)  # main.py's order from here on
        model = ref.model.model_generater(
            model_name=args.model_name, feature_size=args.feature_size
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=0.0005)
        train_dataset = ref.dataset.dataset(args=args, train=True)
        n_a, n_n = len(train_dataset.anomaly_video_train), len(train_dataset.normal_video_train)
        if min(n_a, n_n) < args.sample_size:
            raise BenchError(f"--data {data}: the reference draws {args.sample_size} training "
                             f"videos of each class without replacement; this set has {n_a} "
                             f"anomalous and {n_n} normal")  # fmt: skip
        loader = DataLoader(dataset=train_dataset, batch_size=args.batch_size,
                            num_workers=workers, shuffle=True)  # fmt: skip
        test_loader = DataLoader(dataset=ref.dataset.dataset(args=args, train=False),
                                 batch_size=1, shuffle=False)  # fmt: skip
        with contextlib.redirect_stdout(log):
            ref.train.train(epochs=1, train_loader=Cut(loader, iterations),
                            all_test_loader=[None, test_loader], args=args, model=model,
                            optimizer=optimizer, logger=logger, device=torch.device("cpu"),
                            save_path=save_path)  # fmt: skip
    finally:
        ref.train.eval_p = original_eval
        os.chdir(cwd)
    (work / f"reference_stdout_seed{seed}.txt").write_text(log.getvalue())
    return {"seed": seed, "iterations": iterations, "curve": curve,
            "seconds": time.perf_counter() - started,
            "m_loss": [v for _, v in logger.values.get("m_loss", [])][-1:]}  # fmt: skip


# ---------------------------------------------------------------------- lockstep


def reference_draw(ref_dataset: Any, names_index: dict[str, int], lengths: np.ndarray,
                   t_max: int) -> tuple[Any, np.ndarray, np.ndarray]:  # fmt: skip
    """One reference batch (its own `__getitem__`) and the arnet positions of the same rows.

    Returns (the reference's batch, video indices in arnet's dataset, positions (B, L) with -1
    at padding, L = the reference's trimmed length)."""
    item = ref_dataset[0]  # the index is ignored: each item is a fresh random draw
    names, starts, lens = item[2]
    vids = np.array([names_index[n] for n in names])
    rows = []
    for b, (start, T) in enumerate(zip(starts, lens)):
        anomalous = b < len(names) // 2
        if T <= t_max:
            rows.append(np.arange(T))
        elif anomalous:  # random_perturb's sample indices
            rows.append(np.asarray(start, dtype=np.int64))
        else:  # random_extract's window
            rows.append(int(start) + np.arange(t_max))
    L = max(len(r) for r in rows)
    positions = np.full((len(rows), L), -1, dtype=np.int64)
    for b, r in enumerate(rows):
        positions[b, : len(r)] = r
    assert (lengths[vids] == np.asarray(lens)).all()
    return item, vids, positions


def lockstep(ref: SimpleNamespace, data: Path, seed: int, iterations: int, work: Path,
             sample_size: int = 30, max_seqlen: int = 300) -> dict[str, Any]:  # fmt: skip
    """Reference and arnet --compat reference, batch for batch (see the module docstring).

    Before iteration i's forward pass both sides seed torch with `seed * 1000 + i` (dropout's
    masks); the reference's sampler runs on Python's and NumPy's generators seeded with
    `seed`. The models start from the weights `torch.manual_seed(seed)` gives the reference's
    `Model_single` (copied into arnet's; whether arnet's own initialisation gives the same
    weights is recorded too).
    """
    import hashlib
    import random

    import torch

    from arnet.config import REFERENCE_COMPAT, TrainConfig
    from arnet.data.dataset import Draw
    from arnet.formats import open_dataset
    from arnet.models import build_objective, create_model
    from arnet.training.runtime import make_adam
    from arnet.training.trainer import model_args

    torch.set_num_threads(1)
    dataset_path = expose_as_reference(data, work)
    dim = feature_dim(data)
    extra = ["--sample_size", str(sample_size), "--max-seqlen", str(max_seqlen)]
    args = reference_args(ref, dataset_path, dim, seed, 10**9, extra)
    train_set, _ = open_dataset(data, in_memory=True)
    names_index = {n: i for i, n in enumerate(train_set.names)}
    zero_rows = sum(int((~np.abs(train_set.features(i)).max(axis=-1).astype(bool)).sum())
                    for i in range(len(train_set)))  # fmt: skip
    if zero_rows:  # the reference counts a video's length as its non-zero rows
        raise BenchError(f"--data {data}: {zero_rows} all-zero feature rows; the reference "
                         "would miscount those videos' lengths")  # fmt: skip
    ref_data = ref.dataset.dataset(args=args, train=True)
    config = TrainConfig(model="single", seed=seed, device="cpu", videos_per_class=sample_size,
                         max_segments=max_seqlen, **REFERENCE_COMPAT)  # fmt: skip
    torch.manual_seed(seed)
    ref_model = ref.model.model_generater(model_name=args.model_name, feature_size=dim)
    torch.manual_seed(seed)
    ours = create_model("single", dim, **model_args(config))
    same_init = all(torch.equal(a, b) for a, b in zip(ref_model.state_dict().values(),
                                                      ours.state_dict().values()))  # fmt: skip
    ours.load_state_dict(ref_model.state_dict())  # same names: fc, classifier
    initial_sha = hashlib.sha256(
        b"".join(v.numpy().tobytes() for v in ours.state_dict().values())
    ).hexdigest()
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=args.lr, weight_decay=0.0005)
    our_opt = make_adam(ours, config.lr, config.weight_decay, config.fused_adam)
    objective = build_objective("single", config)
    weights = [float(w) for w in args.Lambda.split("_")]
    random.seed(seed)
    np.random.seed(seed)
    ref_model.train()
    ours.train()
    rows, draws = [], []
    for it in range(1, iterations + 1):
        item, vids, positions = reference_draw(ref_data, names_index, train_set.lengths,
                                                args.max_seqlen)  # fmt: skip
        draws.append({"videos": [train_set.names[v] for v in vids],
                      "positions": positions.tolist()})  # fmt: skip
        dropout_seed = seed * 1000 + it
        # the reference's own step (train.py's lines)
        torch.manual_seed(dropout_seed)
        [a_f, n_f], [a_l, n_l], _ = item
        features = torch.cat((a_f.squeeze(0), n_f.squeeze(0)), dim=0)
        videolabels = torch.cat((a_l.squeeze(0), n_l.squeeze(0)), dim=0).float()
        seq_len = torch.sum(torch.max(features.abs(), dim=2)[0] > 0, dim=1).numpy()
        features = features[:, : np.max(seq_len), :].float()
        _, element_logits = ref_model(features)
        m_loss = ref.losses.KMXMILL_individual(element_logits=element_logits, seq_len=seq_len,
                                               labels=videolabels, device="cpu",
                                               loss_type="CE", args=args)  # fmt: skip
        n_loss = ref.losses.normal_smooth(element_logits=element_logits, labels=videolabels,
                                          device="cpu")  # fmt: skip
        ref_loss = weights[0] * m_loss + weights[1] * n_loss
        m_loss, n_loss = m_loss.detach(), n_loss.detach()
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_grad = {n: p.grad.detach().clone() for n, p in ref_model.named_parameters()}
        # arnet's step on the same rows
        batch = train_set.batch(Draw(vids, positions, None))
        feats_equal = bool(torch.equal(batch.features, features))
        torch.manual_seed(dropout_seed)
        with torch.no_grad():
            scores = ours(batch.features, torch.ones_like(batch.mask))  # the output alone
        torch.manual_seed(dropout_seed)
        loss, parts = objective(ours, batch)
        our_opt.zero_grad()
        loss.backward()
        our_grad = {n: p.grad.detach().clone() for n, p in ours.named_parameters()}
        out_diff = float((scores - element_logits.detach().squeeze(-1)).abs().max())
        rows.append({
            "iteration": it,
            "dropout_seed": dropout_seed,
            "features_equal": feats_equal,
            "labels_equal": bool(torch.equal(batch.labels, videolabels.squeeze(-1))),
            "reference_loss": float(ref_loss.detach()), "arnet_loss": float(loss.detach()),
            "reference_mil": float(m_loss), "arnet_mil": float(parts["mil"].detach()),
            "reference_center": float(n_loss), "arnet_center": float(parts["center"].detach()),
            "reference_grad_norm": _norm(ref_grad), "arnet_grad_norm": _norm(our_grad),
            "reference_grad_norms": {n: float(g.norm()) for n, g in ref_grad.items()},
            "grad_max_abs_diff": max(float((ref_grad[n] - our_grad[n]).abs().max())
                                     for n in ref_grad),
            "reference_output_sum": float(element_logits.detach().sum()),
            "output_max_abs_diff": out_diff,
        })  # fmt: skip
        ref_opt.step()
        our_opt.step()
        rows[-1]["weights_max_abs_diff_after_step"] = max(
            float((p - q).detach().abs().max())
            for p, q in zip(ref_model.parameters(), ours.parameters())
        )
    return {"seed": seed, "weights_seed": seed, "arnet_init_equals_reference": same_init,
            "initial_weights_sha256": initial_sha, "sample_size": sample_size,
            "max_seqlen": max_seqlen, "lr": args.lr, "rows": rows, "draws": draws}  # fmt: skip


def _norm(grads: dict[str, Any]) -> float:
    return float(sum(float((g.double() ** 2).sum()) for g in grads.values()) ** 0.5)


def features_sha256(dataset: Any) -> str:
    """SHA-256 of a dataset's features (float32, in its video order): the fixture's set."""
    import hashlib

    h = hashlib.sha256()
    for i in range(len(dataset)):
        h.update(dataset.names[i].encode())
        h.update(np.ascontiguousarray(dataset.features(i), dtype=np.float32).tobytes())
    return h.hexdigest()


def write_fixture(path: Path, data: Path, run: dict[str, Any]) -> None:
    """The reference's numbers of one lockstep run, for tests/test_reference_lockstep.py: the
    `arnet synth` settings of the set, the checksum of its training features, the seeds, each
    iteration's videos and positions, and the reference's losses and gradient norms."""
    from arnet.formats import open_dataset

    record = data / "synth_config.json"
    if not record.is_file():
        raise BenchError(f"--fixture needs a set written by `arnet synth` ({record} missing)")
    synth = json.loads(record.read_text())
    synth = {k: v for k, v in synth.items() if k not in ("files", "modal")}
    train_set = open_dataset(data, split="train", in_memory=True)
    keep = ("iteration", "dropout_seed", "reference_loss", "reference_mil", "reference_center",
            "reference_grad_norm", "reference_grad_norms", "reference_output_sum")  # fmt: skip
    fixture = {
        "about": "numbers computed once by benchmarks/reference_run.py --lockstep from the "
                 "reference AR-Net code (wanboyang/Anomaly_AR_Net_ICME_2020); no code of it",
        "synth": synth,
        "train_features_sha256": features_sha256(train_set),
        "weights_seed": run["weights_seed"],
        "initial_weights_sha256": run["initial_weights_sha256"],
        "sample_size": run["sample_size"],
        "max_seqlen": run["max_seqlen"],
        "lr": run["lr"],
        "draws": run["draws"],
        "reference": [{k: row[k] for k in keep} for row in run["rows"]],
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")


# ---------------------------------------------------------------------- output


def write_outputs(out: Path, payload: dict[str, Any], csv_rows: list[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    if csv_rows:
        with out.with_suffix(".csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
            w.writeheader()
            w.writerows(csv_rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, help="checkout of the reference AR-Net code")
    p.add_argument("--data", required=True, help="AR-Net-layout dataset folder")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seeds", default="1,2,3,4", help="comma-separated seeds")
    p.add_argument("--lr", type=float, default=None, help="the reference's --lr (default its own)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="training DataLoader workers (the reference's main.py uses 1; with 0, Python's "
        "and NumPy's generators are seeded with the seed)",
    )
    p.add_argument(
        "--lockstep",
        type=int,
        default=0,
        metavar="N",
        help="instead of training: compare N iterations with arnet --compat reference",
    )
    p.add_argument(
        "--sample-size",
        type=int,
        default=30,
        help="lockstep: videos of each class per batch (the reference's --sample_size)",
    )
    p.add_argument(
        "--max-seqlen",
        type=int,
        default=300,
        help="lockstep: the reference's --max-seqlen (arnet's --max-segments)",
    )
    p.add_argument(
        "--fixture",
        default=None,
        help="lockstep: also write the reference's numbers of the first seed here",
    )
    p.add_argument("--out", default="reference_run.json")
    p.add_argument("--work", default=None, help="folder for the reference's files (default: temp)")
    args = p.parse_args(argv)
    try:
        ref = load_reference(args.reference)
        data = check_data(args.data)
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError as exc:
            raise BenchError(
                f"--seeds {args.seeds}: not a comma-separated list of integers"
            ) from exc
        if args.iterations < 1 or args.eval_every < 1:
            raise BenchError("--iterations and --eval-every must be >= 1")
        with contextlib.ExitStack() as stack:
            work = (
                Path(args.work)
                if args.work
                else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="arref-")))
            )
            if args.lockstep:
                runs = [
                    lockstep(
                        ref,
                        data,
                        s,
                        args.lockstep,
                        work / f"lock{s}",
                        args.sample_size,
                        args.max_seqlen,
                    )
                    for s in seeds
                ]
                rows = [{"seed": r["seed"], **row} for r in runs for row in r["rows"]]
                write_outputs(Path(args.out), {"data": str(data), "lockstep": runs}, rows)
                if args.fixture:
                    write_fixture(Path(args.fixture), data, runs[0])
                worst = max(abs(r["reference_loss"] - r["arnet_loss"]) for r in rows)
                print(f"lockstep {args.lockstep} iterations x {len(seeds)} seeds: worst "
                      f"|loss difference| {worst:.3g}, worst gradient difference "
                      f"{max(r['grad_max_abs_diff'] for r in rows):.3g}")  # fmt: skip
                return 0
            from arnet.formats import open_dataset

            test_set = open_dataset(data, split="test", in_memory=True)
            runs = []
            for s in seeds:
                run = train_reference(
                    ref,
                    data,
                    s,
                    args.iterations,
                    args.eval_every,
                    work / f"seed{s}",
                    test_set,
                    args.workers,
                    args.lr,
                )
                runs.append(run)
                last = run["curve"][-1]
                print(f"seed {s}: AUC {last['auc']:.4f} at {last['iteration']} "
                      f"(reference eval {last['auc_reference_eval']:.4f}, "
                      f"{run['seconds']:.0f} s)", file=sys.stderr)  # fmt: skip
        rows = [{"seed": r["seed"], **c} for r in runs for c in r["curve"]]
        write_outputs(Path(args.out), {"data": str(data), "reference": str(ref.root),
                                       "runs": runs}, rows)  # fmt: skip
    except BenchError as exc:
        print(f"reference_run.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

import argparse
import json
import shutil
import subprocess
import sys

import pytest

from arnet.cli import build_parser, main
from arnet.cli.main import COMMANDS
from arnet.config import TrainConfig
from arnet.training.checkpoint import load_checkpoint

SMALL = [
    "--train-videos",
    "30",
    "--train-anomalous",
    "10",
    "--test-videos",
    "16",
    "--test-anomalous",
    "6",
    "--dim",
    "16",
    "--min-segments",
    "4",
    "--max-video-segments",
    "30",
]


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_reference_command_runs_unchanged(tiny_data, tmp_path, capsys):
    # the reference's own spelling of every option it has
    argv = [
        "train",
        "--dataset_path",
        str(tiny_data.parent),
        "--dataset_name",
        tiny_data.name,
        "--model_name",
        "model_single",
        "--loss_type",
        "DMIL_C",
        "--Lambda",
        "1_20",
        "--max-seqlen",
        "300",
        "--max_epoch",
        "1",
        "--feature_modal",
        "combine",
        "--feature_pretrain_model",
        "i3d",
        "--feature_layer",
        "fc6",
        "--feature_size",
        "64",
        "--batch_size",
        "1",
        "--sample_size",
        "5",
        "--sample_step",
        "1",
        "--k",
        "4",
        "--lr",
        "0.0001",
        "--seed",
        "1",
        "--plot",
        "0",
        "--larger_mem",
        "1",
        "--snapshot",
        "20",
        "--label_type",
        "unary",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "run"),
        "--json",
    ]
    assert main(argv) == 0
    result = _json_out(capsys)
    assert result["iterations"] == 40  # one epoch = as many iterations as training videos
    assert 0 <= result["metrics"]["auc"] <= 1
    config = TrainConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert (config.model, config.mil_weight, config.center_weight) == ("single", 1.0, 20.0)
    assert config.in_memory and not config.plot and config.videos_per_class == 5


def test_new_spellings_map_to_the_same_config():
    parse = build_parser().parse_args
    a = parse(
        [
            "train",
            "--model_name",
            "model_single",
            "--Lambda",
            "2_5",
            "--max-seqlen",
            "7",
            "--sample_size",
            "3",
            "--snapshot",
            "9",
            "--max_epoch",
            "2",
        ]
    )
    b = parse(
        [
            "train",
            "--model",
            "single",
            "--mil-weight",
            "2",
            "--center-weight",
            "5",
            "--max-segments",
            "7",
            "--videos-per-class",
            "3",
            "--snapshot-every",
            "9",
            "--epochs",
            "2",
        ]
    )
    from arnet.cli.common import config_overrides

    assert config_overrides(a) == config_overrides(b)


@pytest.mark.parametrize(
    ("options", "lr"),
    [
        ([], 1e-4),  # the paper's (1e-3 lost on Ped2: docs/generalisation.md)
        (["--model", "mean"], 1e-4),
        (["--model", "rtfm"], 1e-3),  # a method's own
        (["--compat", "reference"], 1e-4),  # the reference code's, named by the preset
        (["--model", "rtfm", "--lr", "5e-4"], 5e-4),  # given wins
        (["--compat", "reference", "--lr", "3e-3"], 3e-3),
    ],
)
def test_the_learning_rate_of_each_model_and_preset(options, lr):
    from arnet.cli.common import config_overrides

    args = build_parser().parse_args(["train", "--data", "d", *options])
    assert TrainConfig(**config_overrides(args)).lr == lr


def test_train_then_test_from_the_checkpoint(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_data),
                "--iterations",
                "20",
                "--snapshot",
                "10",
                "--sample_size",
                "6",
                "--no-plot",
                "--out",
                str(run),
                "--json",
            ]
        )
        == 0
    )
    trained = _json_out(capsys)
    assert (
        main(
            [
                "test",
                "--checkpoint",
                str(run),
                "--out",
                str(tmp_path / "t"),
                "--json",
                "--per-video",
            ]
        )
        == 0
    )
    tested = _json_out(capsys)
    assert tested["metrics"]["auc"] == pytest.approx(trained["metrics"]["auc"])
    assert len(tested["per_video"]) == 24
    assert (tmp_path / "t" / "plots").is_dir() and (tmp_path / "t" / "metrics.json").is_file()
    # the table form
    assert (
        main(
            [
                "test",
                "--checkpoint",
                str(run / "checkpoints" / "iter_000010.pt"),
                "--out",
                str(tmp_path / "t2"),
                "--no-plot",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "frame AUC (all videos)" in text and "false alarm rate (normal videos)" in text


def test_resume_extends_a_run(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--sample_size", "6", "--no-plot", "--json"]
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_data),
                "--iterations",
                "10",
                "--snapshot",
                "5",
                "--out",
                str(run),
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--iterations", "15", *common]) == 0
    assert _json_out(capsys)["iterations"] == 15
    assert load_checkpoint(run)["iteration"] == 15
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "cannot change lr when resuming" in capsys.readouterr().err


def test_demo_small(tmp_path, capsys):
    assert (
        main(["demo", "--out", str(tmp_path / "demo"), "--iterations", "12", "--json", *SMALL]) == 0
    )
    result = _json_out(capsys)
    assert set(result["results"]) == {"arnet", "naive baseline"}
    for run in result["results"].values():
        assert 0 <= run["metrics"]["auc"] <= 1
    assert (tmp_path / "demo" / "arnet" / "report.html").is_file()


def test_a_demo_run_works_from_any_folder_old_runs_too(tmp_path, capsys, monkeypatch):
    """Run folders name their dataset by an absolute path; a run saved with a path relative
    to where it was started (demos did so) is read against its own folder."""
    import torch

    from arnet.training.checkpoint import save_checkpoint
    from arnet.web.runs import RunFolders

    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    started.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(started)
    argv = ["demo", "--out", "demo", "--iterations", "3", "--no-baseline", "--json", *SMALL]
    assert main(argv) == 0
    capsys.readouterr()
    run = started / "demo" / "arnet"
    assert json.loads((run / "config.json").read_text())["data"] == str(started / "demo" / "data")
    monkeypatch.chdir(elsewhere)
    test = ["test", "--checkpoint", str(run), "--no-plot", "--json"]
    assert main(test) == 0
    assert _json_out(capsys)["metrics"]["auc"] is not None
    assert RunFolders(started).ground_truth(run)["error"] is None
    # as such a run was saved before: the dataset relative to the folder it was started from
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data": "demo/data"}))
    for checkpoint in (run / "checkpoints").glob("*.pt"):
        payload = torch.load(checkpoint, weights_only=True)
        payload["config"]["data"] = "demo/data"
        save_checkpoint(checkpoint, payload)
    assert main(test) == 0
    assert _json_out(capsys)["metrics"]["auc"] is not None
    assert load_checkpoint(run)["config"]["data"] == str(started / "demo" / "data")
    assert RunFolders(started).ground_truth(run)["error"] is None
    # a path found nowhere stays as it was, and is named
    (run / "config.json").write_text(json.dumps({**config, "data": "gone/data"}))
    assert "gone/data" in RunFolders(started).ground_truth(run)["error"]


def test_synth_and_models(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "d"), *SMALL, "--data-seed", "3"]) == 0
    assert "wrote a synthetic dataset" in capsys.readouterr().out
    assert (tmp_path / "d" / "features_video" / "i3d" / "combine").is_dir()
    assert main(["models", "--json"]) == 0
    models = {m["name"]: m for m in _json_out(capsys)["models"]}
    assert models["single"]["parameters"] == 2048 * 2048 + 2048 + 2048 + 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/nonexistent/data"], "/nonexistent/data: dataset not found"),
        (["train", "--data", "DATA", "--model", "transformer"], "unknown model 'transformer'"),
        (["train"], "no dataset"),
        (["test", "--checkpoint", "/nonexistent/ckpt.pt"], "ckpt.pt: checkpoint not found"),
        (["train", "--data", "DATA", "--feature_size", "1024"], "but feature_dim is 1024"),
        (["train", "--data", "DATA", "--model-arg", "hidden_dim=-5"], "hidden_dim must be a pos"),
        (["train", "--data", "DATA", "--Lambda", "1_20", "--center-weight", "5"], "not both"),
        (
            ["train", "--data", "DATA", "--loss_type", "DMIL", "--center-weight", "5"],
            "center loss off",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, message, tiny_data, tmp_path, capsys):
    argv = [str(tiny_data) if a == "DATA" else a for a in argv]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_corrupt_checkpoint_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["test", "--checkpoint", str(bad)]) == 2
    assert "bad.pt: not a readable checkpoint" in capsys.readouterr().err


def test_reference_lambda_is_validated():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--Lambda", "1-20"])


def test_existing_run_folder_is_refused(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(tiny_data),
        "--iterations",
        "4",
        "--snapshot",
        "2",
        "--sample_size",
        "4",
        "--no-plot",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    shutil.rmtree(run)


def test_parsed_values_the_reference_and_python_spell(tmp_path, capsys):
    parse = build_parser().parse_args
    assert parse(["train", "--model-arg", "bidirectional=False"]).model_args == [
        ("bidirectional", False)
    ]
    assert parse(["train", "--pretrained_ckpt", "None"]).pretrained is None
    with pytest.raises(SystemExit):
        parse(["train", "--device", "abc"])
    assert "unknown device 'abc'" in capsys.readouterr().err
    assert main(["models", "--feature-dim", "0"]) == 2
    assert "feature_dim must be a positive integer" in capsys.readouterr().err


def test_synth_never_writes_into_another_folder(tmp_path, capsys):
    small = ["--train-videos", "12", "--train-anomalous", "4", "--test-videos", "8"]
    small += ["--test-anomalous", "3", "--dim", "8"]
    real = tmp_path / "real"
    real.mkdir()
    (real / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert main(["synth", str(real), *small, *extra]) == 2
        assert "is not empty" in capsys.readouterr().err
    assert (real / "notes.txt").read_text() == "keep me"
    assert main(["synth", str(tmp_path / "s"), *small]) == 0
    assert main(["synth", str(tmp_path / "s"), *small, "--dim", "12", "--overwrite"]) == 0
    assert "dim 12" in capsys.readouterr().out


def test_a_run_tests_from_any_working_directory(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tiny_data.parent)
    run = tmp_path / "run"
    argv = ["train", "--data", tiny_data.name, "--iterations", "2", "--snapshot", "2"]
    assert main([*argv, "--no-plot", "--quiet", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["data"] == str(tiny_data)
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["test", "--checkpoint", str(run), "--no-plot", "--json"]) == 0
    assert _json_out(capsys)["metrics"]["auc"] is not None


# What no help or version needs: the network and video libraries (seconds to import on a busy
# machine), nor the array, database and web ones.
HEAVY = ("torch", "cv2", "openvino", "onnxruntime", "av", "numpy", "PIL", "matplotlib")
HEAVY += ("scipy", "sqlalchemy", "fastapi", "uvicorn", "tensorboard")


def _loaded_by(argv: list[str]) -> list[str]:
    """The modules loaded in a fresh interpreter by `arnet ARGV` (which must exit 0)."""
    code = (
        "import json, sys\n"
        "from arnet.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "arnet" in out  # the help or the version was printed
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"]] + [[c, "--help"] for c in sorted(COMMANDS)]
)
def test_help_and_version_load_nothing_heavy(argv):
    # Counted in imports, not seconds: every command's help loads about what `arnet --help`
    # does (its option definitions), and none of the libraries the command itself runs on.
    loaded = _loaded_by(argv)
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
    baseline = _loaded_by(["--version"])
    assert len(loaded) <= len(baseline) + 20, sorted(set(loaded) - set(baseline))


def _options(command: str) -> list[argparse.Action]:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    sub.format_help()  # defines the command's options
    return [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_says_what_it_does_and_names_one_default(command):
    formatter = argparse.HelpFormatter(command)
    for action in _options(command):
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{command} {name}: no help"
        text = formatter._expand_help(action)
        assert text.count("default") <= 1, f"{command} {name}: {text}"


def test_shared_video_options_list_every_backbone_and_their_true_defaults():
    import inspect

    from arnet.extract import list_backbones
    from arnet.extract.flow import FlowSettings
    from arnet.extract.image import make_efficientnet_lite0
    from arnet.extract.motion import make_motion_grid
    from arnet.extract.preprocess import Preprocessing
    from arnet.videoconfig import BACKBONES, CROP_SIZE, MOTION_GRID, POOLS, SHORT_SIDE, SPATIAL

    registered = [b.name for b in list_backbones()]
    assert tuple(registered[: len(BACKBONES)]) == BACKBONES
    for command in ("extract", "detect", "watch"):
        (backbone,) = [a for a in _options(command) if a.dest == "backbone"]
        assert all(name in backbone.help for name in registered), backbone.help
    (extract_backbone,) = [a for a in _options("extract") if a.dest == "backbone"]
    assert "default: i3d" in extract_backbone.help
    assert Preprocessing() == Preprocessing(SHORT_SIDE, CROP_SIZE, "center", 16, "drop", 1)
    assert FlowSettings().method == "tvl1"
    lite0 = inspect.signature(make_efficientnet_lite0).parameters
    assert (lite0["pool"].default, lite0["spatial"].default) == (POOLS[0], SPATIAL[0])
    assert inspect.signature(make_motion_grid).parameters["grid"].default == MOTION_GRID
    helps = {a.dest: a.help for a in _options("extract")}
    assert "(default: mean)" in helps["pool"] and "(default: tvl1)" in helps["flow"]
    assert "(default: 8x12 for motion-grid" in helps["grid"]


def test_test_options_default_to_the_checkpoints_values():
    helps = {a.dest: a.help for a in _options("test")}
    assert helps["threshold"].endswith("(default: the checkpoint's)")
    assert helps["format"].endswith("(default: the checkpoint's; with --data, auto)")
    assert helps["device"].endswith("(default: auto)")  # this machine's, not the training's
    assert "test-CHECKPOINT" in helps["out"]
    train = {a.dest: a.help for a in _options("train")}
    assert train["threshold"].endswith("(default: 0.5)") and "runs/" in train["out"]
    assert train["lr"].startswith("Adam learning rate;") and train["lr"].endswith(
        "(default: 0.0001)"
    )


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"serve"}))
def test_every_command_prints_json_with_the_same_flag(command):
    # `--json`: one JSON object on stdout, the same spelling for every command that prints a
    # result (`alerts --format json` is its older spelling, still accepted).
    flags = {f for a in _options(command) for f in a.option_strings}
    assert "--json" in flags


def test_train_options_take_choices_and_help_from_the_config():
    from arnet.config import config_field

    parser = build_parser()
    parser.parse_args(["train"])  # defines the train options
    train = parser._subparsers._group_actions[0].choices["train"]
    by_dest = {}
    for action in train._actions:
        by_dest.setdefault(action.dest, action)
    for name in ("feature_modal", "precision", "mil_loss", "tail", "test_crop"):
        assert by_dest[name].choices == config_field(name).metadata["choices"]
    from arnet.formats import format_names  # layouts: the format table's names

    assert by_dest["format"].choices == ("auto", *format_names())
    assert set(format_names()) == {"arnet", "list", "csv", "crops", "packed"}
    help = config_field("precision").metadata["help"]
    assert by_dest["precision"].help == help + " (default: fp32)"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--precision", "fp64"])
    with pytest.raises(ValueError, match="'precision' must be one of"):
        TrainConfig(precision="fp64").validate()


def test_resume_refuses_a_change_the_config_calls_fixed(tiny_data, tmp_path, capsys):
    from arnet.config import config_fields

    assert "iterations" in config_fields("resumable") and "lr" not in config_fields("resumable")
    run = tmp_path / "run"
    base = ["train", "--data", str(tiny_data), "--out", str(run), "--iterations", "4"]
    base += ["--snapshot-every", "4", "--sample_size", "3", "--no-plot", "--no-tensorboard"]
    assert main(base + ["--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.5", "--quiet"]) == 2
    assert "cannot change lr when resuming" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_defines_its_options_without_a_clash(command, capsys):
    # Options come from several definers (a command's own, the shared backbone options):
    # argparse only notices two definitions of one flag when the command's parser is built.
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert command in capsys.readouterr().out

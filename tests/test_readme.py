"""The README's commands are real: every `arnet ...` line parses, CI runs the README's test
command word for word, and the quick-start demo command is the one `arnet demo` answers to."""

import re
import shlex
from pathlib import Path

import pytest

from arnet.cli import build_parser
from arnet.cli.main import runner

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _shell_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _arnet_commands() -> list[list[str]]:
    commands = []
    for line in _shell_lines():
        for part in line.split("&&"):
            words = shlex.split(part)
            if words and words[0] == "arnet":
                commands.append(words[1:])
    return commands


def test_the_readme_has_commands():
    assert len(_arnet_commands()) >= 10


@pytest.mark.filterwarnings("ignore:--device 0 names a GPU")  # the reference's default
@pytest.mark.parametrize("argv", _arnet_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_arnet_command_of_the_readme_parses(argv):
    args = build_parser().parse_args(argv)
    assert callable(runner(args.command))


def test_ci_runs_the_readme_test_command():
    setup = [line for line in _shell_lines() if line.endswith("python -m pytest")]
    assert len(setup) == 1
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup[0] in ci


def test_quick_start_sets_up_then_runs_the_demo():
    demo = [line for line in _shell_lines() if line.endswith("&& arnet demo")]
    assert len(demo) == 1 and "pip install torch==2.13.0 && pip install -e ." in demo[0]

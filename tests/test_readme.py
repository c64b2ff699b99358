"""The README's and the documentation's commands are real: every `arnet ...` line parses, CI
runs the README's test command word for word, the quick-start demo command is the one `arnet
demo` answers to, the README stays a short front door and its links lead somewhere."""

import re
import shlex
from pathlib import Path

import pytest

from arnet.cli import build_parser
from arnet.cli.main import runner

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = sorted((ROOT / "docs").glob("*.md"))


def _shell_lines(text: str = README) -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _arnet_commands(text: str = README) -> list[list[str]]:
    commands = []
    for line in _shell_lines(text):
        for part in line.split("&&"):
            words = shlex.split(part)
            for i, word in enumerate(words):  # a redirection or a pipe ends the command
                if word in {">", ">>", "|", "2>", "<"}:
                    words = words[:i]
                    break
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


_DOC_COMMANDS = [(page.name, argv) for page in PAGES for argv in _arnet_commands(page.read_text())]


@pytest.mark.filterwarnings("ignore:--device 0 names a GPU")
@pytest.mark.parametrize(
    "page, argv", _DOC_COMMANDS, ids=lambda a: a if isinstance(a, str) else " ".join(a)[:50]
)
def test_every_arnet_command_of_the_docs_parses(page, argv):
    args = build_parser().parse_args(argv)
    assert callable(runner(args.command)), page


def test_the_docs_have_commands():
    assert len(_DOC_COMMANDS) >= 30


def test_the_readme_is_a_short_front_door():
    assert len(README.splitlines()) <= 250


def test_the_readmes_links_lead_to_files_and_headings():
    headings = {
        re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower())
        for h in re.findall(r"^#+ (.*)$", README, flags=re.M)
    }
    for target in re.findall(r"\]\(([^)]+)\)", README):
        if target.startswith("#"):
            assert target[1:] in headings, target
        elif not target.startswith("http"):
            assert (ROOT / target.split("#")[0]).exists(), target

"""``python -m training``: one module per command, listed once, each with its --help,
and the list the README documents."""

from __future__ import annotations

import pkgutil
import re
import shlex
from types import ModuleType

import pytest

from tests.support.models import ROOT
from tests.unit.test_layering import run_python
from training import commands
from training.cli import BY_NAME, COMMANDS, build_parser, main

# Modules of training/commands that hold what the commands share, not a command.
SHARED = {"options", "common"}
README = (ROOT / "README.md").read_text()


def test_every_command_module_is_registered_once_with_the_protocol() -> None:
    names = [command.NAME for command in COMMANDS]
    assert len(names) == len(set(names)) == len(BY_NAME)
    on_disk = {m.name for m in pkgutil.iter_modules(commands.__path__)} - SHARED
    modules = [command for command in COMMANDS if isinstance(command, ModuleType)]
    assert len(modules) == len(COMMANDS)  # each command is a module of training/commands
    assert on_disk == {command.__name__.rpartition(".")[2] for command in modules}
    for command in modules:
        assert command.__name__ == "training.commands." + command.NAME.replace("-", "_")
        assert isinstance(command.HELP, str)
        assert command.HELP
        assert callable(command.add_arguments)
        assert callable(command.run)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m training {name} ")


def test_the_readme_documents_exactly_the_registered_commands() -> None:
    assert set(re.findall(r"python -m training ([a-z][a-z-]*)", README)) == set(BY_NAME)


def test_the_readme_command_lines_parse() -> None:
    lines = re.findall(r"^\.venv/bin/python -m training ([^#\n]+)", README, re.MULTILINE)
    assert len(lines) >= len(BY_NAME)
    for line in lines:
        argv = shlex.split(line)
        args = build_parser(argv[0]).parse_args(argv)
        assert args.command == argv[0]


def test_help_loads_no_tensorflow() -> None:
    # A fresh interpreter: the list of commands, then every command's --help.
    loaded = run_python(
        "import contextlib, io, json, sys\n"
        "from training.cli import COMMANDS, main\n"
        "def helped(argv):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, argv\n"
        "heavy = ('tensorflow', 'keras', 'numpy')\n"
        "helped(['--help'])\n"
        "listed = [m for m in heavy if m in sys.modules]\n"
        "for command in COMMANDS:\n"
        "    helped([command.NAME, '--help'])\n"
        "helps = [m for m in heavy[:2] if m in sys.modules]\n"
        "print(json.dumps({'list': listed, 'commands': helps}))"
    )
    assert loaded == {"list": [], "commands": []}


def test_an_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit-everything"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fit-everything'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["cell-blocks", "train-cells"])
def test_the_cell_recipes_options_reach_its_settings(command: str) -> None:
    from training.cell_config import CellTrainConfig
    from training.commands.options import cell_config

    args = build_parser(command).parse_args(
        [command, "--model", "cellnet", "--epochs", "3", "--bag", "12", "--hed-gain", "0.3"]
        + ["--weight-decay", "0.05", "--crop-geometry", "0.1"]
    )
    config = cell_config(args, "cellnet", 1e-3)
    assert (config.epochs, config.bag, config.hed_gain, config.weight_decay) == (3, 12, 0.3, 0.05)
    assert config.crop_geometry == 0.1
    assert config.hed_offset == CellTrainConfig.hed_offset
    assert config.learning_rate == 1e-3


def test_the_case_rule_is_fitted_on_photographs_as_they_are_and_measured_on_every_set() -> None:
    from training.capture import CAPTURES

    assert build_parser("fit-case").parse_args(["fit-case"]).captures == ("unperturbed",)
    assert build_parser("cases").parse_args(["cases"]).captures == tuple(CAPTURES)

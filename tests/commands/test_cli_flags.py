"""One flag name per concept across commands: the architecture is --arch, the engines --engines or --backends
(bench's and parity's names), on both commands; the old spellings stay hidden."""

import pytest

from resnet_core.cli import make_parser


@pytest.mark.parametrize("command", ["bench", "parity"])
@pytest.mark.parametrize("arch_flag", ["--arch", "--spec"])
@pytest.mark.parametrize("engines_flag", ["--engines", "--backends"])
def test_bench_and_parity_take_the_same_flags(command, arch_flag, engines_flag):
    args = make_parser().parse_args([command, "x.pth", arch_flag, "resnet18", engines_flag, "torch,keras-jax"])
    assert args.arch == "resnet18"
    assert (args.engines if command == "bench" else args.backends) == "torch,keras-jax"


@pytest.mark.parametrize("command", ["bench", "parity"])
def test_old_spellings_are_hidden_from_help(command, capsys):
    with pytest.raises(SystemExit):
        make_parser().parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert "--arch" in shown and "--spec" not in shown

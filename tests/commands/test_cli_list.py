"""``resnet-core list``: every preset, its parameter count and how it departs from torchvision's ResNet."""

from __future__ import annotations

import resnet_core as rc
from resnet_core.cli import main


def _rows(capsys) -> dict[str, str]:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "block", "layers", "groups", "x", "width", "params", "variant"]
    return {line.split()[0]: line for line in lines[1:]}


def test_every_preset_is_listed_with_its_count(capsys):
    rows = _rows(capsys)
    assert sorted(rows) == rc.list_specs()
    for name, line in rows.items():
        assert f" {rc.make_plan(rc.get_spec(name)).num_params:,}" in line, name


def test_variants_are_named(capsys):
    rows = _rows(capsys)
    assert rows["keras_resnet50v2"].endswith(
        "25,568,360  preact, stride_block=last, conv_bias, stem_pool_padding=zero, preprocessing=tf")
    assert rows["resnetv2_50"].endswith("preact, preprocessing=tf")
    assert rows["resnet50d"].endswith("stem=deep, downsample=avg")
    assert rows["resnet50"].endswith("25,557,032")  # torchvision's defaults: nothing to say

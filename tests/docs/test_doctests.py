"""The examples in the framework-free modules' docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "resnet_core.export",
    "resnet_core.io.api",
    "resnet_core.peers",
    "resnet_core.plan",
    "resnet_core.preprocess",
    "resnet_core.presets",
    "resnet_core.selection",
    "resnet_core.export.save_pretrained",
    "resnet_core.sources.weights",
    "resnet_core.spec",
    "resnet_core.table1",
    "resnet_core.trained_with",
    "resnet_core.weights_info",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

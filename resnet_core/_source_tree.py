"""Make ``resnet_core.backends`` importable from a source checkout.

The adapters live in the checkout's top-level ``backends/`` folder and install as
``resnet_core.backends``. When Python finds this folder before the installed copy (a script or
subprocess started in the checkout's root), point the package at that folder too.
"""

import os
import sys

_package = sys.modules[__package__]
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(_package.__path__[0], "backends")) and os.path.isfile(
    os.path.join(_checkout, "backends", "torch_adapter.py")
):
    _package.__path__.append(_checkout)

"""Cross-framework parity: one model on several engines, each in its own process, compared layer by layer.

``import resnet_core.parity`` imports no framework; the workers do, in their own processes.
"""

from .core import MODES, parity, read_weights_file
from .engines import ENGINES, available_engines, parse_engines, run_engines
from .metrics import TOLERANCES, compare, topk_agreement
from .report import Entry, ParityReport
from .worker import DTYPES

__all__ = [
    "DTYPES", "ENGINES", "MODES", "TOLERANCES", "Entry", "ParityReport", "available_engines", "compare",
    "parity", "parse_engines", "read_weights_file", "run_engines", "topk_agreement",
]

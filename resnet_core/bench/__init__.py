"""``resnet-core bench``: the fastest faithful way to run a model on this machine, measured, not guessed."""

from .report import DEFAULT_TOP1, BenchReport, recommend
from .run import bench, load_source
from .variants import DTYPES, ENGINES, VARIANTS, Variant

__all__ = ["DEFAULT_TOP1", "DTYPES", "ENGINES", "VARIANTS", "BenchReport", "Variant", "bench", "load_source",
           "recommend"]

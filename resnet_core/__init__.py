"""resnet-core: one ResNet spec, compiled to PyTorch and Keras 3, with lossless weights between them.

Importing this package imports no framework; adapters load on first use.
"""

from . import _source_tree  # noqa: F401 - first: lets a source checkout find resnet_core.backends
from .api import build, get_weights, set_weights, spec_of
from .errors import ResNetCoreError
from .export import export
from .io import read_weights, write_weights
from .mapping import WeightsMismatchError, keras_table
from .parity import ParityReport, parity
from .peers import PeerError, from_peer, to_peer
from .plan import Plan, make_plan
from .preprocess import preprocess
from .presets import get_spec, list_specs, register_spec
from .selection import BACKENDS, DEFAULT_BACKEND, ENV_VAR, get_backend, use_backend
from .spec import ResNetSpec, SpecError

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "ENV_VAR", "ParityReport", "PeerError", "Plan", "ResNetCoreError", "ResNetSpec",
    "SpecError", "WeightsMismatchError", "build", "export", "from_peer", "get_backend", "get_spec", "get_weights",
    "keras_table",
    "list_specs", "make_plan", "parity", "preprocess", "read_weights", "register_spec", "set_weights", "spec_of",
    "to_peer", "use_backend", "write_weights",
]

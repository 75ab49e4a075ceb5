"""resnet-core: one ResNet spec, compiled to PyTorch and Keras 3, with lossless weights between them.

Importing this package imports no framework; adapters load on first use.
"""

from . import _source_tree  # noqa: F401 - first: lets a source checkout find resnet_core.backends
from .api import build, get_weights, register_keras_objects, set_weights, spec_of
from .bench import bench
from .errors import ResNetCoreError
from .export import export
from .export.save_pretrained import save_pretrained
from .fold import fold_norms
from .io import write_weights
from .mapping import WeightsMismatchError, keras_table
from .parity import ParityReport, parity
from .peers import PeerError, from_peer, peer_info, to_peer
from .plan import Plan, make_plan
from .preprocess import preprocess
from .presets import get_spec, list_specs, register_spec
from .selection import BACKENDS, DEFAULT_BACKEND, ENV_VAR, get_backend, use_backend
from .sources import read_weights
from .spec import ResNetSpec, SpecError
from .table1 import summary
from .trained_with import decode_predictions, info_of
from .weights_info import WeightsInfo

__version__ = "0.1.0"

register_keras_objects(only_if_imported=True)  # Keras already loaded: its custom layers load from .keras files

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "ENV_VAR", "ParityReport", "PeerError", "Plan", "ResNetCoreError", "ResNetSpec",
    "SpecError", "WeightsInfo", "WeightsMismatchError", "bench", "build", "decode_predictions", "export", "fold_norms",
    "from_peer", "get_backend", "get_spec", "get_weights", "info_of", "keras_table", "list_specs", "make_plan",
    "parity", "peer_info", "preprocess", "read_weights", "register_keras_objects", "register_spec", "save_pretrained",
    "set_weights", "spec_of", "summary",
    "to_peer", "use_backend", "write_weights",
]

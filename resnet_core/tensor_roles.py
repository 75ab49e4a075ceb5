"""The one vocabulary of weight tensors: role -> Keras variable -> canonical (PyTorch) suffix, and the roles
each kind of weighted module owns.

A plan :class:`~resnet_core.plan.Param` has a role (``kernel``, ``gamma``, ``moving_mean``, ...). Keras names
the variable after the role; PyTorch (hence the canonical names) uses its own attribute names. Every table
that pairs the two (the Keras conversion table, the Keras layer graph, the peers' name tables, the
``.weights.h5`` reader and the recovery of a Keras model's spec) is derived from :data:`ROLES` and
:data:`KINDS` here, so none restates a pairing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layouts import Layout


@dataclass(frozen=True)
class Role:
    """What one tensor of a module is, as each side names it."""

    keras: str  # the Keras variable
    canonical: str  # the PyTorch attribute: the canonical name's last part
    init: str  # how a fresh model initialises it (weighted layers' kernels: see the plan)
    trainable: bool = True  # running statistics are buffers in PyTorch, non-trainable variables in Keras


ROLES = {
    "kernel": Role("kernel", "weight", "kaiming_normal_fan_out"),
    "bias": Role("bias", "bias", "zeros"),
    "gamma": Role("gamma", "weight", "ones"),
    "beta": Role("beta", "bias", "zeros"),
    "moving_mean": Role("moving_mean", "running_mean", "zeros", trainable=False),
    "moving_variance": Role("moving_variance", "running_var", "ones", trainable=False),
    "v": Role("v", "v", "ones"),  # EvoNorm-S0's gate
    "tau": Role("tau", "tau", "zeros"),  # FilterResponseNorm's TLU threshold
}


@dataclass(frozen=True)
class Kind:
    """A kind of weighted module: its roles in creation order (Keras's variable order, PyTorch's state_dict
    order), the layout of its kernel, and the Keras layer classes that implement it."""

    roles: tuple[str, ...]
    keras_classes: tuple[str, ...]
    kernel_layout: Layout = Layout.SAME

    def layout(self, role: str) -> Layout:
        return self.kernel_layout if role == "kernel" else Layout.SAME


# Plan modules: conv (Conv), channel_conv (ChannelConv, ECA), dense (the head's fc); the norms by Norm.kind
# (timm's state_dicts: GroupNorm, EvoNorm and FRN keep no running statistics).
KINDS = {
    "conv": Kind(("kernel", "bias"), ("Conv2D", "StdConv2D"), Layout.CONV),  # StdConv2D: resnet_core's own
    "channel_conv": Kind(("kernel", "bias"), ("Conv1D",), Layout.CONV1D),
    "dense": Kind(("kernel", "bias"), ("Dense",), Layout.DENSE),
    "batch": Kind(("gamma", "beta", "moving_mean", "moving_variance"), ("BatchNormalization",)),
    "group": Kind(("gamma", "beta"), ("GroupNormalization",)),
    "evo_s0": Kind(("gamma", "beta", "v"), ("EvoNormS0",)),  # resnet_core's own, as the next
    "frn": Kind(("gamma", "beta", "tau"), ("FilterResponseNormTLU",)),
}
NORM_KINDS = ("batch", "group", "evo_s0", "frn")
# The tensors of each norm kind, by role.
NORM_ROLES = {kind: KINDS[kind].roles for kind in NORM_KINDS}
# The Keras class of each norm kind.
NORM_CLASSES = {kind: KINDS[kind].keras_classes[0] for kind in NORM_KINDS}
# The canonical suffix of each role.
CANONICAL_SUFFIX = {role: r.canonical for role, r in ROLES.items()}
# The Keras variable of each role, and back.
KERAS_VARIABLE = {role: r.keras for role, r in ROLES.items()}
ROLE_OF_KERAS_VARIABLE = {r.keras: role for role, r in ROLES.items()}
# The kind behind each Keras layer class that holds weights.
KIND_OF_KERAS_CLASS = {cls: kind for kind in KINDS.values() for cls in kind.keras_classes}
# Variables of each weighted Keras layer class, in the order Keras creates (and saves) them.
KERAS_VARIABLES = {cls: tuple(KERAS_VARIABLE[r] for r in kind.roles) for cls, kind in KIND_OF_KERAS_CLASS.items()}


def keras_layout(cls: str, variable: str) -> Layout:
    """The layout of a Keras variable of a layer class: kernels are transposed, everything else is stored as is."""
    kind = KIND_OF_KERAS_CLASS.get(cls)
    return Layout.SAME if kind is None else kind.layout(ROLE_OF_KERAS_VARIABLE[variable])


def keras_variables(kind: str) -> tuple[tuple[str, str, Layout], ...]:
    """(Keras variable, canonical suffix, Keras layout) of each tensor of a module ``kind``: a name table's rows."""
    return tuple((KERAS_VARIABLE[r], CANONICAL_SUFFIX[r], KINDS[kind].layout(r)) for r in KINDS[kind].roles)


def canonical_suffixes() -> tuple[str, ...]:
    """Every canonical suffix once, in role order: the tensors a PyTorch module of any kind may hold."""
    return tuple(dict.fromkeys(CANONICAL_SUFFIX.values()))

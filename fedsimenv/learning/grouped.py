"""K copies of one model evaluated at once in the *grouped layout*, for batched cohort training.

A cohort of K devices trains K copies of the same architecture with different weights. Stacking the
K copies' parameters and running the model once is what ``torch.func.vmap`` does, but its batching
rules move the device axis in and out of the batch axis around every convolution (a transpose copy,
a separate bias add, and strided element-wise kernels in between). Here activations stay in one
layout throughout: ``(B, K * C, ...)``, i.e. the K devices' channels side by side in the channel
axis. In that layout

- a convolution of the K copies is one grouped convolution (``groups = K * groups``) with the
  stacked weights reshaped to ``(K * C_out, C_in / groups, kh, kw)``, bias fused;
- element-wise and per-channel operations (activations, pooling, residual adds, flatten from dim 1)
  are correct unchanged, since each device's channels form one contiguous block;
- GroupNorm with G groups is GroupNorm with K * G groups and the stacked affine parameters;
- a linear layer is one batched matrix product over the K blocks of its input.

The model is traced once with ``torch.fx``; every node must be one of the operations above, otherwise
:class:`UnsupportedModel` is raised and the caller falls back to ``vmap``. Buffers (BatchNorm running
statistics) are not supported: the cohort code needs buffer-free models anyway.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

#: Modules without parameters that act element-wise or per channel: run unchanged.
_LAYOUT_FREE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_LAYOUT_FREE_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {
        operator.add,
        operator.mul,
        torch.add,
        torch.mul,
        torch.relu,
        torch.sigmoid,
        torch.tanh,
        F.relu,
        F.relu6,
        F.gelu,
        F.silu,
        F.max_pool2d,
        F.avg_pool2d,
        F.adaptive_avg_pool2d,
    }
)
_LAYOUT_FREE_METHODS = frozenset({"size", "relu", "sigmoid", "tanh"})


class UnsupportedModel(ValueError):
    """The model contains an operation the grouped layout cannot run (the message names it)."""


class GroupedModel:
    """``forward(params, x)``: the outputs of K copies of ``model`` with stacked ``params``.

    Args:
        model: The architecture (its own parameter values are not used).

    Raises:
        UnsupportedModel: the model has buffers, cannot be traced, or uses an unsupported operation.
    """

    def __init__(self, model: nn.Module) -> None:
        if next(iter(model.buffers()), None) is not None:
            raise UnsupportedModel("the model has buffers (e.g. BatchNorm running statistics)")
        try:
            self.graph_module = fx.symbolic_trace(model)
        except Exception as error:  # fx raises many kinds on data-dependent control flow
            raise UnsupportedModel(f"torch.fx cannot trace the model: {error}") from error
        self.modules = dict(self.graph_module.named_modules())
        for node in self.graph_module.graph.nodes:
            self._check(node)
        self.swapped = _pool_before_relu(self.graph_module.graph, self.modules)
        # Channels-last activations when the model max-pools: PyTorch's CPU max-pool is ~14x faster on
        # them than on NCHW at cohort shapes (16 x 1600 x 8 x 8: 0.25 vs 3.6 ms), and the layers keep
        # the format. Without a max-pool it does not pay (ResNet-20 with GroupNorm, MobileNetV2's
        # depthwise convolutions: 10-40% slower), so those stay NCHW. Measured by bench/cohort.
        self.channels_last = any(isinstance(m, nn.MaxPool2d) for m in self.modules.values())

    def forward(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs (K, B, ...) of the K copies for inputs ``x`` of shape (K, B, ...).

        Args:
            params: Stacked parameters by name, each (K, *shape of the model's parameter).
            x: Each copy's input batch.
        """
        num_copies, batch = x.shape[:2]
        grouped = x.transpose(0, 1).reshape(batch, num_copies * x.shape[2], *x.shape[3:])
        if self.channels_last and grouped.dim() == 4:
            grouped = grouped.contiguous(memory_format=torch.channels_last)
        values: dict[fx.Node, Any] = {}
        output: Any = None
        for node in self.graph_module.graph.nodes:
            if node.op == "placeholder":
                values[node] = grouped
            elif node.op == "output":
                output = fx.node.map_arg(node.args[0], values.__getitem__)
            else:
                args = fx.node.map_arg(node.args, values.__getitem__)
                kwargs = fx.node.map_arg(node.kwargs, values.__getitem__)
                values[node] = self._run(node, args, kwargs, params, num_copies)
        if not isinstance(output, torch.Tensor) or output.dim() != 2:
            raise UnsupportedModel("the model's output must be one (batch, features) tensor")
        return output.view(batch, num_copies, -1).transpose(0, 1)

    __call__ = forward

    def _check(self, node: fx.Node) -> None:
        if node.op in ("placeholder", "output"):
            if node.op == "placeholder" and len([n for n in node.graph.nodes if n.op == "placeholder"]) != 1:
                raise UnsupportedModel("the model must take exactly one input")
        elif node.op == "call_module":
            _check_module(str(node.target), self.modules[str(node.target)])
        elif node.op == "call_function":
            _check_function(node)
        elif node.op == "call_method":
            _check_method(node)
        else:
            raise UnsupportedModel(f"graph node {node.op} {node.target}")

    def _run(
        self,
        node: fx.Node,
        args: Any,
        kwargs: Any,
        params: Mapping[str, torch.Tensor],
        num_copies: int,
    ) -> Any:
        if node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        name = str(node.target)
        module = self.modules[name]
        (x,) = args
        if isinstance(module, nn.Conv2d):
            weight = params[f"{name}.weight"]
            bias = params.get(f"{name}.bias")
            out = F.conv2d(
                x,
                weight.reshape(-1, *weight.shape[2:]),
                None if bias is None else bias.reshape(-1),
                module.stride,
                module.padding,
                module.dilation,
                module.groups * num_copies,
            )
            if self.channels_last and x.shape[1] == 1:
                # A one-channel input (one device's grayscale image) is channels-last and NCHW at
                # once, and the convolution then picks NCHW: keep the layers after it channels-last
                # (one device's small-CNN step: 1.15 -> 0.69 ms for conv2 + max-pool, fwd + bwd).
                out = out.contiguous(memory_format=torch.channels_last)
            return out
        if isinstance(module, nn.Linear):
            weight = params[f"{name}.weight"]  # (K, out, in)
            bias = params.get(f"{name}.bias")
            if x.dim() != 2:
                raise UnsupportedModel(f"{name}: nn.Linear on a {x.dim()}-d input")
            blocks = x.view(x.shape[0], num_copies, -1).transpose(0, 1)  # (K, B, in)
            out = (
                torch.bmm(blocks, weight.transpose(1, 2))
                if bias is None
                else torch.baddbmm(bias.unsqueeze(1), blocks, weight.transpose(1, 2))
            )
            return out.transpose(0, 1).reshape(x.shape[0], -1)
        if isinstance(module, nn.GroupNorm):
            scale = params.get(f"{name}.weight")
            shift = params.get(f"{name}.bias")
            return F.group_norm(
                x,
                module.num_groups * num_copies,
                None if scale is None else scale.reshape(-1),
                None if shift is None else shift.reshape(-1),
                module.eps,
            )
        return module(x)


def _is_relu(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.ReLU)
    return (
        node.op == "call_function"
        and node.target in (F.relu, torch.relu)
        and len(node.args) == 1
        and not node.kwargs
    )


def _is_max_pool(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(modules[str(node.target)], nn.MaxPool2d)


def _pool_before_relu(graph: fx.Graph, modules: Mapping[str, nn.Module]) -> int:
    """Rewrite ``maxpool(relu(x))`` as ``relu(maxpool(x))`` where the ReLU feeds only the pool.

    ReLU is monotone, so both give the same values, and the same gradients: where the window's
    maximum is positive both route the gradient to the same entry, and where it is not, both give zero.
    Pooling first runs the ReLU and its backward on a quarter of the entries (for a 2x2 pool), which
    is a tenth of a small CNN's step. Returns the number of pairs swapped.
    """
    swapped = 0
    for relu in list(graph.nodes):
        if not _is_relu(relu, modules) or len(relu.users) != 1:
            continue
        (pool,) = relu.users
        if not _is_max_pool(pool, modules) or pool.args[0] is not relu or len(pool.args) != 1:
            continue
        source = relu.args[0]
        pool.replace_all_uses_with(relu)
        pool.replace_input_with(relu, source)  # pool(x)
        relu.replace_input_with(source, pool)  # relu(pool(x))
        pool.append(relu)  # keep the graph in topological order
        swapped += 1
    graph.lint()
    return swapped


def _is_batch_size(arg: object) -> bool:
    return (
        isinstance(arg, fx.Node)
        and arg.op == "call_method"
        and arg.target == "size"
        and tuple(arg.args[1:]) == (0,)
    )


#: Traced models (or why they cannot be), per model object: tracing costs 1-14 ms (small CNN to
#: ResNet-20), and the trainer hands the same global model to every round's cohort.
_TRACED: weakref.WeakKeyDictionary[nn.Module, GroupedModel | str] = weakref.WeakKeyDictionary()


def grouped_for(model: nn.Module) -> GroupedModel:
    """:class:`GroupedModel` of ``model``, traced once per model object.

    The graph keeps referring to the model's own submodules, so later changes of their parameters are
    seen; a structural change (new layers) needs a new model object, as hard pruning makes.

    Raises:
        UnsupportedModel: as :class:`GroupedModel` (remembered too).
    """
    traced = _TRACED.get(model)
    if traced is None:
        try:
            traced = GroupedModel(model)
        except UnsupportedModel as error:
            traced = str(error)  # the reason, raised afresh each time (no growing traceback)
        _TRACED[model] = traced
    if isinstance(traced, str):
        raise UnsupportedModel(traced)
    return traced


def _check_module(name: str, module: nn.Module) -> None:
    """Raise :class:`UnsupportedModel` unless the grouped engine can run ``module`` for every device."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise UnsupportedModel(f"{name}: padding_mode {module.padding_mode!r}")
    elif isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise UnsupportedModel(f"{name}: Flatten must start at dim 1 and end at -1")
    elif isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) and module.return_indices:
        raise UnsupportedModel(f"{name}: max pooling that returns indices")
    elif isinstance(module, nn.Dropout):
        if module.p != 0:
            raise UnsupportedModel(f"{name}: dropout with p > 0 (needs its own RNG)")
    elif not isinstance(module, (nn.Linear, nn.GroupNorm, *_LAYOUT_FREE_MODULES)):
        raise UnsupportedModel(f"{name}: module type {type(module).__name__}")


def _check_function(node: fx.Node) -> None:
    """Raise :class:`UnsupportedModel` unless the ``call_function`` node keeps device blocks apart."""
    if node.target is torch.flatten:
        dims = (*node.args[1:], *node.kwargs.values())
        if tuple(dims) not in ((1,), (1, -1)):
            raise UnsupportedModel("torch.flatten must start at dim 1")
    elif node.target not in _LAYOUT_FREE_FUNCTIONS:
        raise UnsupportedModel(f"function {getattr(node.target, '__name__', node.target)}")


def _check_method(node: fx.Node) -> None:
    """Raise :class:`UnsupportedModel` unless the ``call_method`` node keeps device blocks apart."""
    if node.target == "flatten":
        if tuple(node.args[1:]) not in ((1,), (1, -1)) or node.kwargs:
            raise UnsupportedModel("Tensor.flatten must start at dim 1")
    elif node.target in ("view", "reshape"):
        # Only the flatten idiom x.view(x.size(0), -1) keeps each device's block contiguous.
        if len(node.args) != 3 or node.args[2] != -1 or not _is_batch_size(node.args[1]):
            raise UnsupportedModel(f"Tensor.{node.target} other than x.{node.target}(x.size(0), -1)")
    elif node.target not in _LAYOUT_FREE_METHODS:
        raise UnsupportedModel(f"method Tensor.{node.target}")

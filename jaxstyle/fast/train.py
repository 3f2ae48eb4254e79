"""Training a transformation network: the state pytree, the pure ``train_step``, and its data-parallel jit.

``train_step(objective, state, batch) -> (state, metrics)`` is pure: ``objective`` is the fixed loss (loss network
and Gram targets, never updated), ``state`` a :class:`TrainState`, ``batch`` a dict of uint8 crops and style
indices. :func:`compile_step` applies ``jax.jit`` once, with the batch split over a 1-D device mesh and everything
else replicated (data parallelism by sharding; XLA inserts the gradient all-reduce); the state is donated.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from .. import xla_options
from .config import FastConfig
from .net import TransformerNet, initial_params
from .objective import Objective, loss_terms

AXIS = "data"


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def network(config: FastConfig, n_styles: int) -> TransformerNet:
    return TransformerNet(n_styles=n_styles, width=config.width, n_residual=config.n_residual)


def optimizer(config: FastConfig) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)  # Johnson et al.: Adam, 1e-3 (the default)


def create_state(net: TransformerNet, config: FastConfig) -> TrainState:
    params = initial_params(net, config.seed)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer(config).init(params))


def init_state(net: TransformerNet, config: FastConfig) -> TrainState:
    """:func:`create_state` as one compiled program (not Flax's op-by-op eager init: ~190 small compilations, most
    of a short run's time), compiled once per network and configuration, without backend optimisation: it runs
    once (:func:`jaxstyle.xla_options.quick_compile`)."""
    return _jitted_create_state(net, config)()


@functools.lru_cache(maxsize=4)
def _jitted_create_state(net: TransformerNet, config: FastConfig):
    return jax.jit(functools.partial(create_state, net, config), compiler_options=xla_options.quick_compile())


def batch_styles(step: int, batch_size: int, n_styles: int) -> np.ndarray:
    """Style index of each image of batch ``step``: round-robin over samples, so every style is seen equally."""
    return ((step * batch_size + np.arange(batch_size)) % n_styles).astype(np.int32)


def make_train_step(net: TransformerNet, tx: optax.GradientTransformation):
    """The pure training step for ``net`` updated by ``tx``."""

    def train_step(objective: Objective, state: TrainState, batch: dict):
        contents = batch["content"].astype(jnp.float32) / 255.0
        style = jax.nn.one_hot(batch["style"], net.n_styles, dtype=jnp.float32)

        def loss_fn(params):
            outputs = net.apply(params, contents, style)
            terms = loss_terms(objective, outputs, contents, batch["style"])
            return terms["loss"], terms

        grads, terms = jax.grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), terms

    return train_step


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) whose one axis splits the batch."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, split over the batch axis)."""
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(AXIS))


def compile_step(net: TransformerNet, config: FastConfig, mesh: Mesh):
    """``jax.jit`` of the train step for ``mesh``: batch sharded, objective and state replicated, state donated."""
    return _compile_step(net, config.learning_rate, mesh)


@functools.lru_cache(maxsize=4)
def _compile_step(net: TransformerNet, learning_rate: float, mesh: Mesh):
    # Keyed by what the compiled step depends on (the loss settings travel in the objective's static fields).
    replicated, split = shardings(mesh)
    step = make_train_step(net, optax.adam(learning_rate))
    # Without XLA CPU's YNNPACK library fusions: the train step runs faster (docs/fast.md, "Speed").
    return jax.jit(step, in_shardings=(replicated, replicated, split), out_shardings=(replicated, replicated),
                   donate_argnums=(1,), compiler_options=xla_options.no_library_fusions())


def put_batch(content: np.ndarray, style: np.ndarray, mesh: Mesh) -> dict:
    """This process's rows of the global batch, split over ``mesh`` (with one process: the whole batch).

    With several processes each passes its own consecutive block of rows (process ``p`` of ``P``: rows
    ``p*b .. p*b+b-1`` of a global batch of ``P*b``: :func:`local_rows`), and the global batch is never
    assembled on one host.
    """
    _, split = shardings(mesh)

    def put(local):
        return jax.make_array_from_process_local_data(split, local, (local.shape[0] * jax.process_count(),
                                                                     *local.shape[1:]))

    return {"content": put(content), "style": put(style)}


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows of a global batch of ``batch_size`` that this process's devices hold (one block)."""
    _, split = shardings(mesh)
    rows = [i[0].indices(batch_size)[:2] for i in split.addressable_devices_indices_map((batch_size,)).values()]
    start, stop = min(r[0] for r in rows), max(r[1] for r in rows)
    if stop - start != batch_size // jax.process_count():
        raise ValueError("this process's devices do not hold one block of the batch")  # jax.devices() order
    return slice(start, stop)

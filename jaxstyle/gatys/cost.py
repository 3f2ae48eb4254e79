"""What one iteration of a stylization costs, as XLA counts it (for ``--profile``'s achieved FLOP/s)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..nets.model import VGGModel
from ..objective.perceptual import total_loss
from .config import StyleConfig, loss_weights
from .problem import prepare


def evaluation_flops(content, style, model: VGGModel, config: StyleConfig) -> float | None:
    """FLOPs of one loss-and-gradient evaluation of one image of a run of ``config`` (``cost_analysis()`` of the
    compiled ``value_and_grad``); one iteration of lbfgs-nols or adam makes exactly one such evaluation, one of
    lbfgs about 1.2 (docs/sweep.md). None where the backend does not count."""
    model = model.with_pooling(config.pooling)
    problem = prepare(model, content, style, config)
    weights = loss_weights(config, max(len(problem.styles), 1))

    def evaluate(x, model, targets, weights):
        return jax.value_and_grad(total_loss)(x, model, targets, weights, problem.spec)

    x = jax.ShapeDtypeStruct(tuple(problem.shape), jnp.float32)
    return compiled_flops(jax.jit(evaluate).lower(x, model, problem.targets, weights).compile())


def compiled_flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled program (``jax.stages.Compiled``); None where the backend gives none."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    value = (cost or {}).get("flops")
    return float(value) if value is not None and value > 0 else None

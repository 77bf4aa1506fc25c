"""BatchNorm with training statistics over fixed groups of examples.

Goyal et al. (2017) normalise each GPU's 32 images by their own mean and
variance, whatever the total batch; BatchNorm over a global batch of 8,192
is a different regulariser. ``GroupBatchNorm(group_size=32)`` splits the
batch into consecutive groups of 32, normalises each by its own statistics
in training ("ghost batch normalisation", Hoffer et al. 2017), and keeps
running averages of the groups' mean statistics for evaluation. Its
variables are flax's ``nn.BatchNorm``'s (``scale``, ``bias``; ``mean``,
``var`` in ``batch_stats``), so a checkpoint reads the same way.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxclf.config.rules import check_group_size


class GroupBatchNorm(nn.Module):
    """BatchNorm over the last axis, with statistics per ``group_size`` examples in training."""

    group_size: int
    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = jnp.float32
    scale_init: nn.initializers.Initializer = nn.initializers.ones
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", self.scale_init, (features,), jnp.float32)
        bias = self.param("bias", self.bias_init, (features,), jnp.float32)
        if self.use_running_average:
            normalised = (x - running_mean.value) * jax.lax.rsqrt(running_var.value + self.epsilon)
        else:
            check_group_size(x.shape[0], self.group_size)
            groups = x.astype(jnp.float32).reshape(-1, self.group_size, *x.shape[1:])
            axes = tuple(range(1, groups.ndim - 1))  # within a group: its examples and positions
            mean, var = groups.mean(axes, keepdims=True), groups.var(axes, keepdims=True)
            normalised = ((groups - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
            if not self.is_initializing():
                kept = self.momentum
                running_mean.value = kept * running_mean.value + (1 - kept) * mean.reshape(-1, features).mean(0)
                running_var.value = kept * running_var.value + (1 - kept) * var.reshape(-1, features).mean(0)
        return (normalised * scale + bias).astype(self.dtype)

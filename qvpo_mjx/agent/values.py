"""What the critic's output means: Q itself (the reference), or a histogram over a fixed support.

With ``critic_bins`` = 0 each Q network outputs Q(s, a) and is trained by MSE to the TD target.
With ``critic_bins`` = K > 0 it outputs K logits over K bins of equal width w evenly spaced on
[``critic_v_min``, ``critic_v_max``] (bin i centred at v_min + (i + 1/2) w), its Q is the mean
sum_i softmax(logits)_i c_i, and it is trained by cross-entropy to the HL-Gauss histogram of the
TD target y (Farebrother et al., "Stop Regressing", ICML 2024): the mass that a normal of mean y
(clipped into the support) and standard deviation ``HL_GAUSS_SIGMA`` w puts in each bin,
renormalised to the support. Every reader of Q (TD target, Q-weights, behaviour and evaluation
selection) goes through :func:`critic_q`, so the two kinds differ only here and in the loss.

Pure functions of the state's structure and hyper-parameters; nothing here changes the state.
Shapes: ``K`` bins, ``...`` any batch shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from qvpo_mjx.agent.state import AgentState, Params

# The normal's standard deviation in bin widths: the value Farebrother et al. found best
# across tasks (sigma / bin width = 0.75).
HL_GAUSS_SIGMA = 0.75


def bin_edges(v_min: jax.Array, v_max: jax.Array, bins: int) -> jax.Array:
    """(K + 1,) evenly spaced edges of the support."""
    return v_min + (v_max - v_min) * jnp.linspace(0.0, 1.0, bins + 1)


def bin_centres(v_min: jax.Array, v_max: jax.Array, bins: int) -> jax.Array:
    """(K,) the value each bin stands for."""
    edges = bin_edges(v_min, v_max, bins)
    return 0.5 * (edges[:-1] + edges[1:])


def hl_gauss_target(y: jax.Array, v_min: jax.Array, v_max: jax.Array, bins: int) -> jax.Array:
    """y (...,) -> (..., K) probabilities: N(clip(y), (0.75 w)^2)'s mass in each bin over its
    mass in the support."""
    edges = bin_edges(v_min, v_max, bins)
    sigma = HL_GAUSS_SIGMA * (v_max - v_min) / bins
    y = jnp.clip(y, v_min, v_max)[..., None]
    cdf = jax.scipy.special.erf((edges - y) / (jnp.sqrt(2.0) * sigma))  # (..., K + 1), 2 Phi - 1
    mass = cdf[..., 1:] - cdf[..., :-1]
    return mass / (cdf[..., -1:] - cdf[..., :1])


def support(state: AgentState) -> tuple[jax.Array, jax.Array]:
    """(v_min, v_max) of the distributional critic, traced."""
    return state.hparams["critic_v_min"], state.hparams["critic_v_max"]


def critic_q(state: AgentState, critic_params: Params, obs: jax.Array, actions: jax.Array
             ) -> tuple[jax.Array, jax.Array | None]:
    """(Q (2, ...), logits (2, ..., K) or None) of both critics at (obs (..., o), actions
    (..., d)): Q is the network's output, or its histogram's mean."""
    out = state.critic.apply(critic_params, obs, actions)
    bins = state.structure.critic_bins
    if not bins:
        return out, None
    return jax.nn.softmax(out, axis=-1) @ bin_centres(*support(state), bins), out


def critic_regression_loss(state: AgentState, q: jax.Array, logits: jax.Array | None,
                           target: jax.Array) -> jax.Array:
    """Both critics' loss, summed: MSE(Q_j, y) (the reference) or the cross-entropy of
    softmax(logits_j) to :func:`hl_gauss_target` (y). q: (2, B); logits: (2, B, K) or None;
    target y: (B,)."""
    if logits is None:
        return jnp.sum(jnp.mean(jnp.square(q - target), axis=-1))
    probs = jax.lax.stop_gradient(
        hl_gauss_target(target, *support(state), state.structure.critic_bins))  # (B, K)
    return -jnp.sum(jnp.mean(jnp.sum(probs * jax.nn.log_softmax(logits, axis=-1), axis=-1),
                             axis=-1))

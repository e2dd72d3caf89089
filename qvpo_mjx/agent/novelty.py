"""The novelty bonus (the ``novelty_weight`` option): random network distillation (Burda et al.,
"Exploration by Random Network Distillation", 2018) as an intrinsic reward in the TD target.

Why: with a sparse reward that has never been seen, every TD target is 0, so QVPO's critic is
exactly flat (hard Q: nothing in it varies with the state or action), every candidate scores the
same and the actor copies its own samples; SAC's soft Q is never flat, because its targets carry
the policy's entropy. The bonus gives the critic a landscape before the first reward: states the
predictor has not learnt yet are worth more.

A fixed random network f and a trained predictor g embed observations (normalised as the critic
sees them); the raw novelty of a state is mean_k (g(s)_k - f(s)_k)^2 over the F features. The
bonus of a transition is ``novelty_weight`` x novelty(s') / m, with m a running mean of the
critic batches' mean novelty (all devices pooled; the first batch's, then an exponential
average at rate :data:`RATE` per critic update): the bonus averages about ``novelty_weight``
per step (``novelty_decay_steps``: falling linearly to 0 over that many env steps, see
:func:`scheduled_weight`; ``novelty_reward_gate``: scaled by the batch's share of unrewarded
transitions, see :func:`reward_gate`), and what it adds to the critic is the contrast between
the states the predictor has learnt and those it has not. (A normaliser fixed at the first
batch was tried first: the predictor learns the visited states within a few hundred updates,
and the bonus fell to a hundredth of its weight within PendulumSwingup's first 5k env steps.)
The predictor takes one Adam step (the critic's learning rate) on each critic batch's s'.
Touches only ``state.novelty``.

Shapes: ``B`` states, ``o`` observation size, ``F`` = :data:`FEATURES`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from qvpo_mjx import parallel
from qvpo_mjx.networks import NoveltyNet

FEATURES = 32  # the embedding's size (random network distillation's order of size)
RATE = 0.01  # the running mean's rate per critic update: it follows the last ~100 batches

Params = dict


@struct.dataclass
class NoveltyState:
    """The bonus's networks, the predictor's Adam state and the running normaliser m."""

    predictor_params: Params
    target_params: Params  # never trained
    opt_state: optax.OptState
    mean_novelty: jax.Array  # () m: running mean of the batches' mean novelty (1 before any)


def network(hidden_size: int) -> NoveltyNet:
    return NoveltyNet(hidden_size=hidden_size, features=FEATURES)


def init(key: jax.Array, obs_size: int, hidden_size: int, tx: optax.GradientTransformation
         ) -> NoveltyState:
    """Predictor and target from independent draws of ``key``; ``tx`` the predictor's optimiser."""
    net = network(hidden_size)
    k_predictor, k_target = jax.random.split(key)
    predictor = net.init(k_predictor, jnp.zeros((obs_size,)))
    return NoveltyState(predictor_params=predictor,
                        target_params=net.init(k_target, jnp.zeros((obs_size,))),
                        opt_state=tx.init(predictor), mean_novelty=jnp.ones((), jnp.float32))


def raw_novelty(novelty: NoveltyState, predictor_params: Params, obs: jax.Array,
                hidden_size: int) -> jax.Array:
    """mean over features of (g(s) - f(s))^2: obs (B, o) -> (B,)."""
    net = network(hidden_size)
    target = jax.lax.stop_gradient(net.apply(novelty.target_params, obs))
    return jnp.mean(jnp.square(net.apply(predictor_params, obs) - target), axis=-1)


def reward_gate(reward: jax.Array, gate: jax.Array, axis_name: str | None = None) -> jax.Array:
    """1 - ``gate`` x the fraction of the batch's transitions with a nonzero reward: reward
    (B,) -> (), pooled over devices; ``gate`` 1 (``novelty_reward_gate``) or 0 (traced)."""
    rewarded = parallel.pmean(jnp.mean((reward != 0).astype(jnp.float32)), axis_name)
    return 1.0 - gate * rewarded


def scheduled_weight(weight: jax.Array, decay_steps: jax.Array, env_steps: jax.Array
                     ) -> jax.Array:
    """The bonus's weight after ``env_steps``: ``weight`` x max(0, 1 - env_steps / decay_steps),
    or ``weight`` itself where ``decay_steps`` is 0 (all scalars, traced)."""
    fraction = env_steps.astype(jnp.float32) / jnp.maximum(decay_steps, 1.0)
    return jnp.where(decay_steps > 0, weight * jnp.maximum(0.0, 1.0 - fraction), weight)


def bonus_and_step(novelty: NoveltyState, obs: jax.Array, is_first: jax.Array, weight: jax.Array,
                   hidden_size: int, tx: optax.GradientTransformation,
                   axis_name: str | None = None) -> tuple[jax.Array, NoveltyState, jax.Array]:
    """The bonus of states obs (B, o) under the predictor before its step, then the step.

    ``is_first``: () bool, this is the run's first critic batch (m starts at its mean).
    Returns (bonus (B,), the new state, the batch's mean raw novelty before the step)."""
    (loss, raw), grads = jax.value_and_grad(
        lambda p: (lambda n: (jnp.mean(n), n))(
            raw_novelty(novelty, p, obs, hidden_size)), has_aux=True)(novelty.predictor_params)
    loss = parallel.pmean(loss, axis_name)
    mean = jnp.maximum(jnp.where(is_first, loss,
                                 (1.0 - RATE) * novelty.mean_novelty + RATE * loss), 1e-12)
    grads = parallel.pmean(grads, axis_name)
    updates, opt_state = tx.update(grads, novelty.opt_state, novelty.predictor_params)
    new = novelty.replace(predictor_params=optax.apply_updates(novelty.predictor_params, updates),
                          opt_state=opt_state, mean_novelty=mean)
    bonus = jax.lax.stop_gradient(weight * raw / mean)
    return bonus, new, loss

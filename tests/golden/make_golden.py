"""Build ``tests/golden/reference.npz``: inputs and outputs of the public PyTorch reference of QVPO.

Usage (by hand, not in CI)::

    python tests/golden/make_golden.py /path/to/qvpo-clone [--out tests/golden/reference.npz]
                                       [--commit SHA]

``/path/to/qvpo-clone`` is a checkout of the public reference implementation (wadx2019/qvpo,
PyTorch, MIT licence). Its modules ``agent/helpers.py``, ``agent/model.py``, ``agent/diffusion.py``,
``agent/q_transform.py`` and ``agent/qvpo.py`` are imported from there UNCHANGED; nothing of the
reference is copied into this repository. The interpreter needs only torch (a CPU build; 2.13.0 was
used) and numpy, e.g. a separate venv: ``python3 -m venv /work/golden-venv &&
/work/golden-venv/bin/pip install torch==2.13.0 numpy``. ``--commit`` records the reference's commit
when the clone is not a git repository (otherwise ``git rev-parse HEAD`` in the clone is used).

The script fixes every weight, the batch and every random draw, runs pieces of the reference, checks
its own bookkeeping (see "Self-checks" below) and writes one npz. Running it twice gives a
byte-identical file (fixed zip timestamps, sorted keys, single-threaded torch).

What was changed at run time (and nothing else)
-----------------------------------------------
* Hidden width 64 instead of 256, to keep the file small: the constructors' default arguments are
  rebound (``Model.__init__.__defaults__ = (64, 32)``, i.e. hidden_size 64, time_dim 32 unchanged;
  ``Critic.__init__.__defaults__ = (64,)``). No line of the reference changes and the code path is
  otherwise identical to the reference's.
* ``memory.sample`` is a stub that returns the fixed batch ``train/batch/*``. NOTE: the reference's
  ``train`` calls ``memory.sample`` TWICE per iteration (once for the critic, once more inside
  ``action_aug`` for the actor), so in the reference the critic and the actor see two independent
  batches; here both calls return the same batch (the script asserts there were exactly 2 calls).
* Every parameter is overwritten with values from ``numpy.random.default_rng(SEED_NUMPY)`` (below),
  and the target networks get their OWN weights, different from the online ones (in the reference
  they start as deep copies). The code path is the same; distinct targets let a test tell the
  target actor/critic from the online ones and make the Polyak step visible.
* Random draws go through a recording wrapper (below); the values are torch's own draws after
  ``torch.manual_seed(SEED_TORCH + offset)``, re-seeded before each piece with its own offset
  (behave 0, eval 1, train and noent 2, init_check 3), so no two pieces share draws except train
  and noent, which must.

Problem sizes and settings
--------------------------
state_dim o = 5, action_dim d = 3, batch B = 8, hidden H = 64, time_dim 32, T = n_timesteps = 20.
QVPO settings (the reference's defaults, with --aug --weighted): Diffusion actor, cosine schedule,
noise_ratio 1.0, deterministic False, train_sample Kt = 64, chosen 1, behavior_sample Kb = 4,
target_sample 4, eval_sample 32, q_transform 'qadv', entropy_alpha 0.02 (10 uniform actions per
state), tau 0.005, diffusion_lr 1e-4, critic_lr 3e-4, Adam eps 1e-5, ac_grad_norm 2.0 (global-norm
clip of each network's gradient), policy_freq 1, update_actor_target_every 1, alpha_mean = alpha_std
= 0.001, beta 1.0, q_neg 0.0, cut 1.0. ``meta/settings_json`` holds the full namespace.

Weights (how ``init/*`` were made, so a test may also regenerate them)
-----------------------------------------------------------------------
rng = numpy.random.default_rng(SEED_NUMPY). Networks in this order: actor (the Diffusion's noise net
``Diffusion.model``), critic, actor_target (its ``.model``), critic_target. Within a network,
parameters in ``named_parameters()`` order (``meta/actor_param_names``,
``meta/critic_param_names``). A weight of torch shape (out, in) is
``rng.normal(0, WEIGHT_GAIN / sqrt(in), size=(out, in))`` (row-major, torch layout); a bias is
``rng.normal(0, BIAS_STD, size=(out,))``; both then cast to float32. After the four networks the
same rng draws, in order: states normal (B, o), actions uniform(-1, 1) (B, d), rewards normal (B, 1),
next_states normal (B, o), behave/state normal (B, o), net/x normal (16, d), net/t = [0, T-1] then
integers(0, T, 14), net/s normal (16, o) (see ``_make_inputs``). The saved arrays are the
reference; regenerating them is only a convenience.

Parameter names (torch) and how to map them to flax
----------------------------------------------------
Actor noise net (``Diffusion.model``), torch names and shapes (out, in):
  time_mlp.1.weight (64, 32), time_mlp.1.bias (64,)   -- Linear(32 -> H) on the sinusoidal embedding
  time_mlp.3.weight (32, 64), time_mlp.3.bias (32,)   -- Linear(H -> 32); Mish between the two
  layer.0.weight (64, 40), layer.0.bias (64,)         -- first trunk layer on cat[x, t_emb, s]
  layer.2.weight (64, 64), layer.2.bias (64,)
  layer.4.weight (64, 64), layer.4.bias (64,)
  layer.6.weight (3, 64),  layer.6.bias (3,)          -- output eps (d); Mish after 0, 2, 4
Critic: q1_model.{0,2,4,6}.{weight,bias} and q2_model.{0,2,4,6}.{weight,bias}; q?_model.0 acts on
cat[state, action] (in = o + d = 8: columns 0..4 state, 5..7 action), widths 64, 64, 64, 1; Mish
after 0, 2, 4.
A torch Linear computes y = x @ W.T + b with W (out, in), so a flax Dense kernel (in, out) is W.T.
For this project's NoiseNet: time_in.kernel = time_mlp.1.weight.T, time_out.kernel =
time_mlp.3.weight.T, first_kernel = layer.0.weight.T (40, 64) whose rows are [x (3) | t_emb (32) |
s (5)] in that order (the same order as the project's first_kernel), first_bias = layer.0.bias,
hidden2 = layer.2, hidden3 = layer.4, out = layer.6 (kernels transposed). TwinCritic: q1 <-
q1_model, q2 <- q2_model, Dense_0..Dense_3 <- .0, .2, .4, .6 (kernels transposed). The input of
every first critic layer is cat[state, action].

Row-order conventions of the reference (the test must apply these)
-------------------------------------------------------------------
* Candidate sampling repeats the B states with ``state.repeat(K, 1)``: flat row r = k*B + b is
  candidate k of state b (k = 0..K-1). All flat sampler arrays below (x_T, noise, candidates, q)
  use this layout. ``reshape(K, B, ...)`` then ``swapaxes(0, 1)`` gives [b, k].
* ``p_sample_loop`` draws x_T first (shape (K*B, d)), then one noise tensor per reverse step in the
  order t = T-1, T-2, ..., 0; ``*/noise[i]`` is the noise of step t = T-1-i. The noise of t = 0 is
  drawn but multiplied by 0 (the reference's nonzero mask); it is saved anyway.
* The chosen action is argmax over k of min(Q1, Q2) (torch argmax/max: the first index on ties).
* Actor loss rows: the reference concatenates [best_actions (B*chosen rows), uniform actions
  (10*B*chosen rows)] along rows; the uniform block comes from expanding to (10, B, .) and viewing,
  so loss row B + j*B + b is the j-th (j = 0..9) uniform action of state b, with state b and weight
  entropy_alpha * w_b (w = the state's qadv weight). The timestep draw t and the noise of the loss
  are drawn for all rows at once, in this row order.

Keys (float32 unless marked; shapes with B = 8, o = 5, d = 3, T = 20)
---------------------------------------------------------------------
Metadata
  meta/commit                 str: the reference's git commit.
  meta/torch_version          str: torch.__version__ that produced the file.
  meta/numpy_version          str.
  meta/seed_numpy             int64 (): SEED_NUMPY for the weights and inputs.
  meta/seed_torch             int64 (): SEED_TORCH; piece seeds are SEED_TORCH + offset (see above).
  meta/weight_gain            float64 (): WEIGHT_GAIN (weight std = WEIGHT_GAIN / sqrt(fan_in)).
  meta/bias_std               float64 (): BIAS_STD.
  meta/settings_json          str: JSON of the QVPO namespace and the sizes (o, d, B, H, ...).
  meta/actor_param_names      str (12,): torch names of the noise net's parameters, in order.
  meta/actor_param_shapes     str (12,): their torch shapes, e.g. "64,40" (out,in) or "64".
  meta/critic_param_names     str (16,): torch names of the critic's parameters, in order.
  meta/critic_param_shapes    str (16,): their torch shapes.
  meta/std_is_unbiased        bool (): True: train/aug/std is torch's q.std(), the unbiased (n-1) std.

Initial weights (torch layout, see the mapping above); <name> is a torch parameter name
  init/actor/<name>           the online actor's noise net (also used by behave/, eval/, net/).
  init/critic/<name>          the online critic (also used by behave/, eval/).
  init/actor_target/<name>    the target actor's noise net before the train call.
  init/critic_target/<name>   the target critic before the train call.

1. Schedules (Diffusion buffers, T = 20), <sched> in {cosine, linear, vp}, each (T,), index = t:
  sched/<sched>/betas, sched/<sched>/alphas_cumprod, sched/<sched>/alphas_cumprod_prev,
  sched/<sched>/sqrt_alphas_cumprod, sched/<sched>/sqrt_one_minus_alphas_cumprod,
  sched/<sched>/log_one_minus_alphas_cumprod, sched/<sched>/sqrt_recip_alphas_cumprod,
  sched/<sched>/sqrt_recipm1_alphas_cumprod, sched/<sched>/posterior_variance,
  sched/<sched>/posterior_log_variance_clipped, sched/<sched>/posterior_mean_coef1,
  sched/<sched>/posterior_mean_coef2  -- each the reference's float32 buffer of that name.

2. Noise network (init/actor weights) and the sinusoidal embedding
  net/x        (16, d)   noisy actions.
  net/t        int64 (16,) timesteps in [0, T).
  net/s        (16, o)   states.
  net/t_emb    (16, 32)  time_mlp output (embedding -> Linear -> Mish -> Linear) for net/t.
  net/eps      (16, d)   Diffusion.model(x, t, s).
  emb/t        int64 (6,) timesteps.
  emb/out      (6, 32)   SinusoidalPosEmb(32)(emb/t): [sin(t f_j) (16) | cos(t f_j) (16)].

3. Samplers of the online actor scored by the online critic (init/ weights), on the B states
   behave/state. <s> = behave: actor(state, eval=False, q_func=critic), K = Kb = 4;
   <s> = eval: actor(state, eval=True, q_func=critic), K = eval_sample = 32.
  behave/state      (B, o)        the states (eval/ uses the same states).
  <s>/x_T           (K*B, d)      x_T, rows k*B+b.
  <s>/noise         (T, K*B, d)   noise[i] is the noise of reverse step t = T-1-i, rows k*B+b.
  <s>/candidates    (K*B, d)      final actions after clamp to [-1, 1], rows k*B+b.
  <s>/q_min         (K*B,)        min(Q1, Q2) of each candidate, rows k*B+b.
  <s>/best_idx      int64 (B,)    argmax_k of q_min (candidate k of state b).
  <s>/action        (B, d)        the returned action per state.
  <s>/draw_tags     str (T+1,)    where each draw was made (function@file:caller[t=step]).

4. One QVPO.train(t=0, iterations=1, batch_size=B) from init/* (entropy_alpha 0.02)
  train/batch/states       (B, o)
  train/batch/actions      (B, d)  in [-1, 1]
  train/batch/rewards      (B, 1)
  train/batch/next_states  (B, o)
  train/batch/masks        (B, 1)  0.99 * (1 - terminal); rows 2 and 5 are terminal (mask 0).
  train/current_q1, train/current_q2   (B, 1)  critic(states, actions) before the critic step.
  train/target/x_T         (4*B, d)      target actor's x_T for next_states, rows k*B+b.
  train/target/noise       (T, 4*B, d)   its per-step noise, noise[i] <-> t = T-1-i.
  train/target/candidates  (4*B, d)      its clamped candidates, rows k*B+b.
  train/target/q_min       (4*B,)        min(Q1, Q2) under the TARGET critic, rows k*B+b.
  train/target/best_idx    int64 (B,)    argmax_k.
  train/target/action      (B, d)        next action a' (the target actor's choice).
  train/target/next_q_min  (B, 1)        min(Q1', Q2')(s', a') under the target critic.
  train/y                  (B, 1)        TD target rewards + masks * next_q_min (detached).
  train/critic_loss        ()            mse(Q1, y) + mse(Q2, y) (each a mean over B).
  train/critic_grad/<name>               critic gradient before clipping (torch layout).
  train/critic_grad_norm   ()            total 2-norm returned by clip_grad_norm_ (pre-clip).
  train/critic_after/<name>              critic parameters after the Adam step (absolute values).
  train/aug/x_T            (Kt*B, d)     sample_n's x_T (Kt = 64), rows k*B+b.
  train/aug/noise          (T, Kt*B, d)  its per-step noise, noise[i] <-> t = T-1-i.
  train/aug/candidates     (B, Kt, d)    its clamped candidates AFTER the reference's transpose:
                                         [b, k] = flat row k*B+b.
  train/aug/scores         (B, Kt)       min(Q1, Q2) of each candidate under the critic AFTER its
                                         optimiser step (the reference passes self.critic, already
                                         stepped).
  train/aug/v              (B, 1)        V(s) = mean over k of scores (the reference's v is (B,1,1)).
  train/aug/mean           ()            mean of all B*Kt scores.
  train/aug/std            ()            torch q.std() of all B*Kt scores: UNBIASED (ddof = 1).
  train/aug/best_idx       int64 (B,)    argmax_k of scores.
  train/aug/best_action    (B, d)        the chosen action per state (chosen = 1).
  train/aug/best_q         (B, 1)        its score.
  train/qadv_weights       (B, 1)        qadv(best_q): max(best_q - v, 0).
  train/running_q_mean     ()            after the update: 0 + 0.001 * (mean - 0).
  train/running_q_std      ()            after the update: 1 + 0.001 * (std - 1).
  train/ent/uniform        (10*B, d)     uniform(-1, 1) entropy actions, row j*B+b = j-th of state b.
  train/loss/actions       (11*B, d)     x0 rows of the actor loss: [best_action; uniform], see rows.
  train/loss/states        (11*B, o)     their states.
  train/loss/weights       (11*B, 1)     their weights: [qadv_weights; 0.02 * qadv_weights tiled].
  train/loss/t             int64 (11*B,) the loss's timestep draws, same row order.
  train/loss/noise         (11*B, d)     the loss's noise draws (the eps target), same row order.
  train/loss/eps_pred      (11*B, d)     the noise net's prediction on q_sample(x0, t, noise).
  train/actor_loss         ()            mean over (11*B, d) of weight * (eps_pred - noise)^2.
  train/actor_grad/<name>                actor (noise net) gradient before clipping.
  train/actor_grad_norm    ()            total 2-norm returned by clip_grad_norm_ (pre-clip).
  train/actor_after/<name>               noise net parameters after the Adam step (absolute).
  train/actor_target_after/<name>        target noise net after the Polyak step (absolute).
  train/critic_target_after/<name>       target critic after the Polyak step (absolute).
  train/draw_tags          str (45,)     every draw of the call, in order: 21 target-actor draws,
                                         21 sample_n draws, uniform_, randint, randn_like.

5. The same call with entropy_alpha = 0.0 (same init/*, same batch, same torch seed). Its first 42
   draws and everything up to the actor's weights equal train/* (asserted); the reference then adds
   no entropy samples, so the loss has B rows.
  noent/loss/t             int64 (B,)  the loss's timestep draws.
  noent/loss/noise         (B, d)      the loss's noise draws.
  noent/loss/eps_pred      (B, d)      the noise net's prediction.
  noent/actor_loss         ()          mean over (B, d) of qadv_weight * (eps_pred - noise)^2.
  noent/actor_grad_norm    ()          total 2-norm of the actor gradient (pre-clip).
  noent/draw_tags          str (44,)   its draws, in order.

6. Q transforms of agent/q_transform.py on a hand-made q (B, 1)
  qt/q                (B, 1)  the input Q values (chosen to hit every branch and both clamps).
  qt/v                (B, 1)  V for qadv (passed to the reference as (B, 1, 1)).
  qt/running_q_mean   ()      passed to qexpn.
  qt/running_q_std    ()      passed to qexpn.
  qt/q_neg            ()      passed to qrelu.
  qt/cut              ()      passed to qcut.
  qt/beta             ()      passed to qexpn.
  qt/qadv             (B, 1)  max(q - v, 0)              (batch_size B, chosen 1).
  qt/qcut             (B, 1)  q where q >= cut, else cut.
  qt/qrelu            (B, 1)  max(q, -q_neg) + q_neg.
  qt/qexpn            (B, 1)  exp(beta * clip((q - mean) / std, -8, 8)).

7. The reference's init_weights on a fresh nn.Linear(256, 256) (torch seed SEED_TORCH + 3)
  init_check/frac_beyond_2sigma   float64 ()  fraction of the 65536 weights with |w| > 2 sigma,
                                              sigma = 1 / (2 sqrt(256)); about 0.0455 because the
                                              truncation loop rebinds a local name and leaves the
                                              weights plain normal.
  init_check/std_over_sigma       float64 ()  std of the weights / sigma (about 1).
  init_check/bias_max_abs         float64 ()  max |bias| (0: biases are zeroed).
  init_check/weight_sample        (16,)       weight[0, :16].

Self-checks made before writing (the script stops if one fails)
---------------------------------------------------------------
* Every random call of torch and numpy's global RNG is wrapped; only torch.randn, randn_like,
  randint and Tensor.uniform_ occur, and any other draw during a recorded call raises.
* Replay: each recorded piece is re-run on fresh objects with a DIFFERENT torch seed while the
  wrappers hand back the recorded draws; all outputs come out bit-identical, so the saved draws
  determine every output.
* Row layouts: flat candidates reshaped (K, B, d) and transposed equal train/aug/candidates; the
  chosen actions are the argmax rows; train/aug/std equals numpy's ddof=1 std; y, the critic loss
  and the actor loss recomputed from the saved arrays agree; the candidates' scores are those of the
  stepped critic and not of the initial one.
* Every saved key is documented in this docstring.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

SEED_NUMPY = 20240531
SEED_TORCH = 0
SEED_OFFSET = {"behave": 0, "eval": 1, "train": 2, "init_check": 3}
REPLAY_SEED_SHIFT = 12345  # a different seed for the replay runs
# Weight std WEIGHT_GAIN / sqrt(fan_in): with the reference's 0.5 the 4-layer Mish nets give outputs
# of a few 1e-2, so a wrong network would hide under a loose tolerance; 1.0 gives O(0.1..1) outputs.
WEIGHT_GAIN = 1.0
BIAS_STD = 0.1  # non-zero biases so that a bias mix-up shows

OBS, ACT, BATCH, HIDDEN, TIME_DIM, T_STEPS = 5, 3, 8, 64, 32, 20
TERMINAL_ROWS = (2, 5)
GAMMA = 0.99

# The reference's QVPO reads these attributes from its argparse namespace (main.py defaults, with
# --aug --weighted); values not used by this code path (action_lr, ratio, ...) keep their defaults.
SETTINGS = dict(
    policy_type="Diffusion", beta_schedule="cosine", n_timesteps=T_STEPS, noise_ratio=1.0,
    deterministic=False, behavior_sample=4, target_sample=4, eval_sample=32, train_sample=64,
    chosen=1, weighted=True, aug=True, gradient=False, q_transform="qadv", entropy_alpha=0.02,
    beta=1.0, alpha_mean=0.001, alpha_std=0.001, q_neg=0.0, cut=1.0, epsilon=0.0, policy_freq=1,
    tau=0.005, update_actor_target_every=1, diffusion_lr=1e-4, critic_lr=3e-4, ac_grad_norm=2.0,
    action_lr=0.03, action_gradient_steps=20, ratio=0.1,
)


# --------------------------------------------------------------------------------------------
# Recording (and replaying) every random draw
# --------------------------------------------------------------------------------------------

class DrawTape:
    """Wraps torch's random functions used by the reference.

    mode 'record': draw normally and keep (tag, value); mode 'replay': hand back the kept values in
    order (the shapes must match), so a re-run under another seed shows the tape is complete.
    Tags name the wrapped function and the reference function that called it; inside p_sample they
    also carry the step t, and the Diffusion instance's label when it is one we registered.
    """

    RECORDED = ("randn", "randn_like", "randint")
    FORBIDDEN_TORCH = ("rand", "rand_like", "randint_like", "normal", "randperm", "multinomial",
                       "bernoulli", "poisson")
    FORBIDDEN_TENSOR = ("normal_", "random_", "bernoulli_", "exponential_", "cauchy_",
                        "log_normal_", "geometric_")
    FORBIDDEN_NUMPY = ("rand", "randn", "randint", "random", "uniform", "normal", "choice",
                       "permutation", "shuffle")

    def __init__(self, owners: dict[int, str] | None = None, replay_from: list | None = None):
        self.owners = owners or {}
        self.entries: list[tuple[str, torch.Tensor]] = []
        self.replay = replay_from
        self._patches: list[tuple[object, str, bool, object]] = []

    # -- tagging ---------------------------------------------------------------------------
    def _tag(self, fn: str) -> str:
        frame = sys._getframe(2)  # 0: _tag, 1: the wrapper, 2: the reference code that drew
        where = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
        owner = frame.f_locals.get("self")
        label = self.owners.get(id(owner))
        if label is not None:
            where = f"{label}.{where}"
        step = frame.f_locals.get("t") if frame.f_code.co_name == "p_sample" else None
        if isinstance(step, torch.Tensor):
            where += f"[t={int(step.reshape(-1)[0])}]"
        return f"{fn}@{where}"

    def _take(self, tag: str, shape, fresh):
        if self.replay is None:
            value = fresh()
            self.entries.append((tag, value.detach().clone()))
            return value
        i = len(self.entries)
        old_tag, old = self.replay[i]
        assert old_tag == tag and tuple(old.shape) == tuple(shape), (i, old_tag, tag, old.shape, shape)
        self.entries.append((tag, old.clone()))
        return old.clone()

    # -- patching ----------------------------------------------------------------------------
    def _patch(self, owner, name, new):
        had = name in vars(owner) if isinstance(owner, type) else True
        self._patches.append((owner, name, had, getattr(owner, name)))
        setattr(owner, name, new)

    def __enter__(self):
        orig = {n: getattr(torch, n) for n in self.RECORDED}
        tape = self

        def randn(*size, **kw):
            shape = size[0] if len(size) == 1 and not isinstance(size[0], int) else size
            return tape._take(tape._tag("randn"), shape, lambda: orig["randn"](*size, **kw))

        def randn_like(x, **kw):
            return tape._take(tape._tag("randn_like"), x.shape, lambda: orig["randn_like"](x, **kw))

        def randint(low, high, size, **kw):
            return tape._take(tape._tag("randint"), size, lambda: orig["randint"](low, high, size, **kw))

        orig_uniform = torch.Tensor.uniform_

        def uniform_(self_, a=0.0, b=1.0, **kw):
            value = tape._take(tape._tag("uniform_"), self_.shape,
                               lambda: orig_uniform(self_.clone(), a, b, **kw))
            with torch.no_grad():
                self_.copy_(value)
            return self_

        for name, fn in (("randn", randn), ("randn_like", randn_like), ("randint", randint)):
            self._patch(torch, name, fn)
        self._patch(torch.Tensor, "uniform_", uniform_)

        def forbidden(name):
            def fail(*a, **k):
                raise RuntimeError(f"unrecorded random draw: {name}")
            return fail

        for name in self.FORBIDDEN_TORCH:
            self._patch(torch, name, forbidden(f"torch.{name}"))
        for name in self.FORBIDDEN_TENSOR:
            self._patch(torch.Tensor, name, forbidden(f"Tensor.{name}"))
        for name in self.FORBIDDEN_NUMPY:
            self._patch(np.random, name, forbidden(f"np.random.{name}"))
        return self

    def __exit__(self, *exc):
        for owner, name, had, old in reversed(self._patches):
            if had:
                setattr(owner, name, old)
            else:
                delattr(owner, name)
        self._patches.clear()
        return False

    def tags(self) -> list[str]:
        return [tag for tag, _ in self.entries]


class CallLog:
    """Records what the reference computes in between, by wrapping callables it looks up at call
    time (instance forwards, torch functions); every wrapper calls the original unchanged."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self._undo: list = []

    def of(self, kind: str) -> list[dict]:
        return [data for k, data in self.events if k == kind]

    def wrap_attr(self, owner, name: str, kind: str, before=None, after=None):
        original = getattr(owner, name)
        # Restore by deleting what was not an own attribute (an nn.Module's forward, say).
        had = name in (vars(owner) if isinstance(owner, (type, types.ModuleType)) else owner.__dict__)

        def wrapper(*args, **kwargs):
            data = before(*args, **kwargs) if before else {}
            out = original(*args, **kwargs)
            if after:
                data.update(after(out))
            self.events.append((kind, data))
            return out

        self._undo.append((owner, name, had, original))
        setattr(owner, name, wrapper)

    def undo(self):
        for owner, name, had, original in reversed(self._undo):
            if had:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._undo.clear()


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().copy()


# --------------------------------------------------------------------------------------------
# The reference, weights and inputs
# --------------------------------------------------------------------------------------------

def load_reference(clone: Path) -> types.SimpleNamespace:
    """Import the reference's agent modules from the clone, unchanged, with H = 64."""
    sys.dont_write_bytecode = True  # leave the clone as it was
    sys.path.insert(0, str(clone))
    import agent.diffusion
    import agent.helpers
    import agent.model
    import agent.q_transform
    import agent.qvpo
    assert Path(agent.qvpo.__file__).resolve().is_relative_to(clone.resolve()), agent.qvpo.__file__
    # Smaller hidden width via the constructors' defaults; time_dim stays 32.
    agent.model.Model.__init__.__defaults__ = (HIDDEN, TIME_DIM)
    agent.model.Critic.__init__.__defaults__ = (HIDDEN,)
    return types.SimpleNamespace(helpers=agent.helpers, model=agent.model, diffusion=agent.diffusion,
                                 q_transform=agent.q_transform, qvpo=agent.qvpo)


def _net_weights(rng: np.random.Generator, module: torch.nn.Module) -> dict[str, np.ndarray]:
    out = {}
    for name, p in module.named_parameters():
        if p.dim() == 2:
            out[name] = rng.normal(0.0, WEIGHT_GAIN / np.sqrt(p.shape[1]), size=tuple(p.shape))
        else:
            out[name] = rng.normal(0.0, BIAS_STD, size=tuple(p.shape))
        out[name] = out[name].astype(np.float32)
    return out


def _load(module: torch.nn.Module, weights: dict[str, np.ndarray]):
    params = dict(module.named_parameters())
    assert params.keys() == weights.keys()
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.from_numpy(weights[name]))


def _make_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Batch, network inputs and hand-made Q values, drawn after the weights from the same rng."""
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    terminal = np.zeros((BATCH, 1))
    terminal[list(TERMINAL_ROWS)] = 1.0
    inputs = {
        "states": f32(rng.normal(size=(BATCH, OBS))),
        "actions": f32(rng.uniform(-1.0, 1.0, size=(BATCH, ACT))),
        "rewards": f32(rng.normal(size=(BATCH, 1))),
        "next_states": f32(rng.normal(size=(BATCH, OBS))),
        "masks": f32(GAMMA * (1.0 - terminal)),
        "behave_state": f32(rng.normal(size=(BATCH, OBS))),
        "net_x": f32(rng.normal(size=(16, ACT))),
        # both ends of [0, T) always present, the rest random
        "net_t": np.concatenate([[0, T_STEPS - 1], rng.integers(0, T_STEPS, size=14)]).astype(np.int64),
        "net_s": f32(rng.normal(size=(16, OBS))),
    }
    return inputs


def make_weights(ref) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(SEED_NUMPY)
    # Shapes only: build throw-away nets (their own torch init is overwritten).
    actor = ref.model.Model(OBS, ACT)
    critic = ref.model.Critic(OBS, ACT)
    weights = {"actor": _net_weights(rng, actor), "critic": _net_weights(rng, critic),
               "actor_target": _net_weights(rng, actor), "critic_target": _net_weights(rng, critic)}
    weights["inputs"] = _make_inputs(rng)
    return weights


class FixedBatchMemory:
    """Stands in for ReplayMemory: every sample() returns (copies of) the same batch."""

    def __init__(self, inputs: dict[str, np.ndarray]):
        self.batch = [inputs[k] for k in ("states", "actions", "rewards", "next_states", "masks")]
        self.calls = 0

    def sample(self, batch_size):
        assert batch_size == BATCH
        self.calls += 1
        return tuple(torch.from_numpy(a.copy()) for a in self.batch)


def build_agent(ref, weights, **overrides):
    settings = dict(SETTINGS, **overrides)
    space = types.SimpleNamespace(shape=(ACT,), high=np.ones(ACT, np.float32), low=-np.ones(ACT, np.float32))
    memory = FixedBatchMemory(weights["inputs"])
    agent = ref.qvpo.QVPO(argparse.Namespace(**settings), OBS, space, memory, None, "cpu")
    _load(agent.actor.model, weights["actor"])
    _load(agent.critic, weights["critic"])
    _load(agent.actor_target.model, weights["actor_target"])
    _load(agent.critic_target, weights["critic_target"])
    return agent


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------

SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
                    "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
                    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


def piece_schedules(ref, out):
    for kind in ("cosine", "linear", "vp"):
        diff = ref.diffusion.Diffusion(OBS, ACT, 1.0, beta_schedule=kind, n_timesteps=T_STEPS)
        buffers = dict(diff.named_buffers())
        assert set(buffers) == set(SCHEDULE_BUFFERS), sorted(buffers)
        for name in SCHEDULE_BUFFERS:
            assert buffers[name].dtype == torch.float32 and buffers[name].shape == (T_STEPS,)
            out[f"sched/{kind}/{name}"] = _np(buffers[name])


def piece_network(ref, weights, out):
    model = ref.model.Model(OBS, ACT)
    _load(model, weights["actor"])
    inp = weights["inputs"]
    x, t, s = (torch.from_numpy(inp[k]) for k in ("net_x", "net_t", "net_s"))
    with torch.no_grad():
        out["net/x"], out["net/t"], out["net/s"] = inp["net_x"], inp["net_t"], inp["net_s"]
        out["net/t_emb"] = _np(model.time_mlp(t))
        out["net/eps"] = _np(model(x, t, s))
        emb_t = torch.tensor([0, 1, 2, 7, 13, T_STEPS - 1], dtype=torch.int64)
        out["emb/t"] = _np(emb_t)
        out["emb/out"] = _np(ref.helpers.SinusoidalPosEmb(TIME_DIM)(emb_t))


def _sampler_draws(entries, label: str, rows: int):
    """Split one p_sample_loop's draws: x_T, then the steps t = T-1 .. 0."""
    tags = [tag for tag, _ in entries]
    expected = [f"randn@{label}.diffusion.py:p_sample_loop"] + [
        f"randn_like@{label}.diffusion.py:p_sample[t={t}]" for t in reversed(range(T_STEPS))]
    assert tags == expected, tags
    x_T = _np(entries[0][1])
    noise = np.stack([_np(v) for _, v in entries[1:]])
    assert x_T.shape == (rows, ACT) and noise.shape == (T_STEPS, rows, ACT)
    return x_T, noise


def _critic_log(log: CallLog, kind: str, critic):
    log.wrap_attr(critic, "forward", kind,
                  before=lambda s, a: {"state": _np(s), "action": _np(a)},
                  after=lambda q: {"q1": _np(q[0]), "q2": _np(q[1])})


def run_sampler(ref, weights, eval_mode: bool, seed: int, replay=None):
    agent = build_agent(ref, weights)
    state = torch.from_numpy(weights["inputs"]["behave_state"])
    log = CallLog()
    _critic_log(log, "critic", agent.critic)
    torch.manual_seed(seed)
    try:
        with DrawTape({id(agent.actor): "actor"}, replay) as tape:
            action = agent.actor(state, eval=eval_mode, q_func=agent.critic)
    finally:
        log.undo()
    return tape, log, _np(action)


def piece_sampler(ref, weights, out, prefix: str, eval_mode: bool):
    k = SETTINGS["eval_sample"] if eval_mode else SETTINGS["behavior_sample"]
    seed = SEED_TORCH + SEED_OFFSET[prefix]
    tape, log, action = run_sampler(ref, weights, eval_mode, seed)
    # Replay under another seed: the recorded draws must fix the result bit for bit.
    tape2, log2, action2 = run_sampler(ref, weights, eval_mode, seed + REPLAY_SEED_SHIFT, replay=tape.entries)
    assert np.array_equal(action, action2)
    x_T, noise = _sampler_draws(tape.entries, "actor", k * BATCH)
    (call,) = log.of("critic")
    cand = call["action"]
    q_min = np.minimum(call["q1"], call["q2"])[:, 0]
    assert np.array_equal(call["state"], np.tile(weights["inputs"]["behave_state"], (k, 1)))
    best = q_min.reshape(k, BATCH).argmax(axis=0)
    assert np.array_equal(action, cand.reshape(k, BATCH, ACT)[best, np.arange(BATCH)])
    assert cand.min() >= -1.0 and cand.max() <= 1.0
    if not eval_mode:
        out["behave/state"] = weights["inputs"]["behave_state"]
    out.update({f"{prefix}/x_T": x_T, f"{prefix}/noise": noise, f"{prefix}/candidates": cand,
                f"{prefix}/q_min": q_min, f"{prefix}/best_idx": best.astype(np.int64),
                f"{prefix}/action": action, f"{prefix}/draw_tags": np.array(tape.tags())})


def run_train(ref, weights, seed: int, replay=None, **overrides):
    """One QVPO.train call with every intermediate logged."""
    agent = build_agent(ref, weights, **overrides)
    names = {id(p): n for n, p in agent.critic.named_parameters()}
    names.update({id(p): n for n, p in agent.actor.model.named_parameters()})
    log = CallLog()
    _critic_log(log, "critic", agent.critic)
    _critic_log(log, "critic_target", agent.critic_target)
    log.wrap_attr(agent.actor_target, "forward", "actor_target", after=lambda a: {"action": _np(a)})
    log.wrap_attr(agent.actor, "sample_n", "sample_n",
                  before=lambda state, **kw: {"times": kw["times"], "chosen": kw["chosen"]},
                  after=lambda r: {"best_action": _np(r[1]), "best_q": _np(r[2][0]), "v": _np(r[2][1]),
                                   "mean": _np(r[3][0]), "std": _np(r[3][1])})
    log.wrap_attr(agent.actor, "loss", "actor_loss_inputs",
                  before=lambda x, state, weights=1.0: {"x": _np(x), "state": _np(state), "w": _np(weights)})
    log.wrap_attr(ref.qvpo, "qadv", "qadv", after=lambda w: {"w": _np(w)})
    log.wrap_attr(torch.nn.functional, "mse_loss", "mse_loss",
                  before=lambda a, b, **kw: {"input": _np(a), "target": _np(b)},
                  after=lambda r: {"out": _np(r)})
    log.wrap_attr(torch.Tensor, "backward", "backward", before=lambda self_, *a, **k: {"loss": _np(self_)})

    original_clip = torch.nn.utils.clip_grad_norm_

    def clip(parameters, *a, **kw):
        # qvpo.py passes a generator: list it once, read the raw gradients, hand the list on.
        params = list(parameters)
        data = {"grads": {names[id(p)]: _np(p.grad) for p in params}}
        norm = original_clip(params, *a, **kw)
        data["norm"] = _np(norm)
        log.events.append(("clip", data))
        return norm

    torch.nn.utils.clip_grad_norm_ = clip
    owners = {id(agent.actor): "actor", id(agent.actor_target): "actor_target"}
    torch.manual_seed(seed)
    try:
        with DrawTape(owners, replay) as tape:
            agent.train(0, 1, batch_size=BATCH)
    finally:
        torch.nn.utils.clip_grad_norm_ = original_clip
        log.undo()
    assert agent.memory.calls == 2, agent.memory.calls
    return agent, tape, log


def _params(module) -> dict[str, np.ndarray]:
    return {n: _np(p) for n, p in module.named_parameters()}


def _train_results(agent, tape, log) -> dict[str, object]:
    """Flatten the logged call into named arrays (used to compare a replay with the original)."""
    res = {"tags": tape.tags(), "running": (float(agent.running_q_mean), float(agent.running_q_std))}
    for kind, data in log.events:
        for key, value in data.items():
            res[f"{kind}/{len(res)}/{key}"] = value
    for name, module in (("actor", agent.actor.model), ("critic", agent.critic),
                         ("actor_target", agent.actor_target.model), ("critic_target", agent.critic_target)):
        res[f"after/{name}"] = _params(module)
    return res


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def _critic_qmin(ref, params, state, action):
    critic = ref.model.Critic(OBS, ACT)
    _load(critic, params)
    with torch.no_grad():
        q1, q2 = critic(torch.from_numpy(state), torch.from_numpy(action))
    return np.minimum(_np(q1), _np(q2))


def piece_train(ref, weights, out):
    seed = SEED_TORCH + SEED_OFFSET["train"]
    agent, tape, log = run_train(ref, weights, seed)
    agent2, tape2, log2 = run_train(ref, weights, seed + REPLAY_SEED_SHIFT, replay=tape.entries)
    assert _same(_train_results(agent, tape, log), _train_results(agent2, tape2, log2)), "replay differs"
    inp = weights["inputs"]
    B, Kt, Kg = BATCH, SETTINGS["train_sample"], SETTINGS["target_sample"]

    # Draws: 21 target actor, 21 sample_n, uniform entropy actions, loss t, loss noise.
    e = tape.entries
    assert len(e) == 2 * (T_STEPS + 1) + 3, tape.tags()
    tx_T, tnoise = _sampler_draws(e[:T_STEPS + 1], "actor_target", Kg * B)
    ax_T, anoise = _sampler_draws(e[T_STEPS + 1:2 * T_STEPS + 2], "actor", Kt * B)
    assert [tag for tag, _ in e[-3:]] == ["uniform_@qvpo.py:train", "randint@actor.diffusion.py:loss",
                                          "randn_like@actor.diffusion.py:p_losses"], tape.tags()
    uniform, loss_t, loss_noise = (_np(v) for _, v in e[-3:])

    for k in ("states", "actions", "rewards", "next_states", "masks"):
        out[f"train/batch/{k}"] = inp[k]

    # Critic calls in order: critic(s, a), then (inside sample_n) critic(Kt*B candidates).
    c_now, c_aug = log.of("critic")
    assert np.array_equal(c_now["state"], inp["states"]) and np.array_equal(c_now["action"], inp["actions"])
    out["train/current_q1"], out["train/current_q2"] = c_now["q1"], c_now["q2"]
    # Target critic calls: scoring the target actor's candidates, then Q'(s', a').
    ct_cand, ct_next = log.of("critic_target")
    assert np.array_equal(ct_cand["state"], np.tile(inp["next_states"], (Kg, 1)))
    t_qmin = np.minimum(ct_cand["q1"], ct_cand["q2"])[:, 0]
    t_best = t_qmin.reshape(Kg, B).argmax(axis=0)
    (next_action,) = (d["action"] for d in log.of("actor_target"))
    assert np.array_equal(next_action, ct_cand["action"].reshape(Kg, B, ACT)[t_best, np.arange(B)])
    assert np.array_equal(ct_next["action"], next_action)
    next_q = np.minimum(ct_next["q1"], ct_next["q2"])
    out.update({"train/target/x_T": tx_T, "train/target/noise": tnoise,
                "train/target/candidates": ct_cand["action"], "train/target/q_min": t_qmin,
                "train/target/best_idx": t_best.astype(np.int64), "train/target/action": next_action,
                "train/target/next_q_min": next_q})

    mse1, mse2, mse3 = log.of("mse_loss")
    y = mse1["target"]
    assert np.array_equal(y, mse2["target"]) and np.array_equal(mse1["input"], c_now["q1"])
    assert np.allclose(y, inp["rewards"] + inp["masks"] * next_q, rtol=0, atol=1e-6)
    (loss_c, loss_a) = (d["loss"] for d in log.of("backward"))
    assert np.allclose(loss_c, mse1["out"] + mse2["out"], rtol=1e-6, atol=0)
    clip_c, clip_a = log.of("clip")
    out["train/y"], out["train/critic_loss"] = y, loss_c
    out["train/critic_grad_norm"] = clip_c["norm"]
    norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in clip_c["grads"].values()))
    assert np.isclose(norm, clip_c["norm"], rtol=1e-5)
    for name, g in clip_c["grads"].items():
        out[f"train/critic_grad/{name}"] = g
    critic_after = _params(agent.critic)
    for name, p in critic_after.items():
        out[f"train/critic_after/{name}"] = p

    # Actor: sample_n's candidates (flat rows k*B+b) and their scores.
    (sn,) = log.of("sample_n")
    assert (sn["times"], sn["chosen"]) == (Kt, 1)
    assert np.array_equal(c_aug["state"], np.tile(inp["states"], (Kt, 1)))
    cand = c_aug["action"].reshape(Kt, B, ACT).transpose(1, 0, 2)
    scores = np.minimum(c_aug["q1"], c_aug["q2"])[:, 0].reshape(Kt, B).T
    best = scores.argmax(axis=1)
    assert np.array_equal(sn["best_action"], cand[np.arange(B), best])
    assert np.array_equal(sn["best_q"][:, 0], scores[np.arange(B), best])
    assert sn["v"].shape == (B, 1, 1)
    v = sn["v"].reshape(B, 1)
    assert np.allclose(v[:, 0], scores.astype(np.float64).mean(axis=1), atol=1e-6)
    assert np.isclose(sn["std"], scores.astype(np.float64).std(ddof=1), rtol=1e-5)
    assert not np.isclose(sn["std"], scores.astype(np.float64).std(ddof=0), rtol=1e-5, atol=0)
    # Which critic scored them: the stepped one, not the initial one.
    q_after = _critic_qmin(ref, critic_after, c_aug["state"], c_aug["action"])
    q_before = _critic_qmin(ref, weights["critic"], c_aug["state"], c_aug["action"])
    assert np.allclose(q_after[:, 0], scores.T.reshape(-1), rtol=0, atol=1e-6)
    assert not np.allclose(q_before[:, 0], scores.T.reshape(-1), rtol=0, atol=1e-6)
    out.update({"train/aug/x_T": ax_T, "train/aug/noise": anoise, "train/aug/candidates": cand,
                "train/aug/scores": scores, "train/aug/v": v, "train/aug/mean": sn["mean"],
                "train/aug/std": sn["std"], "train/aug/best_idx": best.astype(np.int64),
                "train/aug/best_action": sn["best_action"], "train/aug/best_q": sn["best_q"]})

    (qadv,) = log.of("qadv")
    w = qadv["w"]
    assert np.allclose(w, np.maximum(sn["best_q"] - v, 0.0), atol=1e-7)
    out["train/qadv_weights"] = w
    # float + 0-d tensor: the running statistics became float32 tensors
    out["train/running_q_mean"] = _np(torch.as_tensor(agent.running_q_mean))
    out["train/running_q_std"] = _np(torch.as_tensor(agent.running_q_std))

    # Actor loss inputs: [best (B rows); uniform (10B rows, j*B+b)].
    (li,) = log.of("actor_loss_inputs")
    n_ent = 10 * B
    assert uniform.shape == (n_ent, ACT) and uniform.min() >= -1 and uniform.max() <= 1
    assert np.array_equal(li["x"], np.concatenate([sn["best_action"], uniform]))
    assert np.array_equal(li["state"], np.tile(inp["states"], (11, 1)))
    ent_w = np.tile(w, (10, 1)) * np.float32(SETTINGS["entropy_alpha"])
    assert np.array_equal(li["w"], np.concatenate([w, ent_w]))
    assert loss_t.shape == (11 * B,) and loss_t.dtype == np.int64 and loss_noise.shape == (11 * B, ACT)
    assert np.array_equal(mse3["target"], loss_noise)
    eps_pred = mse3["input"]
    assert np.isclose(loss_a, (li["w"].astype(np.float64) * (eps_pred - loss_noise) ** 2).mean(), rtol=1e-5)
    out.update({"train/ent/uniform": uniform, "train/loss/actions": li["x"], "train/loss/states": li["state"],
                "train/loss/weights": li["w"], "train/loss/t": loss_t, "train/loss/noise": loss_noise,
                "train/loss/eps_pred": eps_pred, "train/actor_loss": loss_a,
                "train/actor_grad_norm": clip_a["norm"], "train/draw_tags": np.array(tape.tags())})
    for name, g in clip_a["grads"].items():
        out[f"train/actor_grad/{name}"] = g
    for prefix, module in (("actor_after", agent.actor.model),
                           ("actor_target_after", agent.actor_target.model),
                           ("critic_target_after", agent.critic_target)):
        for name, p in _params(module).items():
            out[f"train/{prefix}/{name}"] = p
    return tape, log


def piece_train_no_entropy(ref, weights, out, first_tape, first_log):
    seed = SEED_TORCH + SEED_OFFSET["train"]  # the same seed as train/: the sampler draws coincide
    agent, tape, log = run_train(ref, weights, seed, entropy_alpha=0.0)
    agent2, tape2, log2 = run_train(ref, weights, seed + REPLAY_SEED_SHIFT, replay=tape.entries,
                                    entropy_alpha=0.0)
    assert _same(_train_results(agent, tape, log), _train_results(agent2, tape2, log2)), "replay differs"
    B = BATCH
    e = tape.entries
    n_shared = 2 * (T_STEPS + 1)
    assert len(e) == n_shared + 2, tape.tags()
    # Same seed, same shapes: the sampler draws (and so the critic step) are those of train/.
    for (tag1, v1), (tag2, v2) in zip(first_tape.entries[:n_shared], e[:n_shared]):
        assert tag1 == tag2 and torch.equal(v1, v2)
    assert np.array_equal(first_log.of("qadv")[0]["w"], log.of("qadv")[0]["w"])
    (li,) = log.of("actor_loss_inputs")
    assert li["x"].shape == (B, ACT) and np.array_equal(li["w"], log.of("qadv")[0]["w"])
    loss_t, loss_noise = _np(e[-2][1]), _np(e[-1][1])
    mse3 = log.of("mse_loss")[2]
    assert np.array_equal(mse3["target"], loss_noise)
    _, loss_a = (d["loss"] for d in log.of("backward"))
    _, clip_a = log.of("clip")
    recomputed = (li["w"].astype(np.float64) * (mse3["input"] - loss_noise) ** 2).mean()
    assert np.isclose(loss_a, recomputed, rtol=1e-5)
    out.update({"noent/loss/t": loss_t, "noent/loss/noise": loss_noise, "noent/loss/eps_pred": mse3["input"],
                "noent/actor_loss": loss_a, "noent/actor_grad_norm": clip_a["norm"],
                "noent/draw_tags": np.array(tape.tags())})


def piece_q_transforms(ref, out):
    qt = ref.q_transform
    # Hand-chosen: both qexpn clamps (|z| > 8), values below, at and above cut = 1, q = v ties.
    q = np.array([[-12.0], [-1.0], [-0.3], [0.0], [0.5], [1.0], [1.7], [12.0]], np.float32)
    v = np.array([[-11.0], [-1.5], [0.2], [0.0], [0.1], [1.0], [2.0], [3.0]], np.float32)
    kw = dict(running_q_mean=0.4, running_q_std=1.3, q_neg=0.5, cut=1.0, beta=1.0)
    t = lambda a: torch.from_numpy(a.copy())  # noqa: E731  (the transforms work in place)
    out["qt/q"], out["qt/v"] = q, v
    for k in ("running_q_mean", "running_q_std", "q_neg", "cut", "beta"):
        out[f"qt/{k}"] = np.float32(kw[k])
    out["qt/qadv"] = _np(qt.qadv(t(q), v=t(v).view(BATCH, 1, 1), batch_size=BATCH, chosen=1))
    out["qt/qcut"] = _np(qt.qcut(t(q), cut=kw["cut"]))
    out["qt/qrelu"] = _np(qt.qrelu(t(q), q_neg=kw["q_neg"]))
    out["qt/qexpn"] = _np(qt.qexpn(t(q), running_q_mean=kw["running_q_mean"],
                                   running_q_std=kw["running_q_std"], beta=kw["beta"]))


def piece_init_weights(ref, out):
    torch.manual_seed(SEED_TORCH + SEED_OFFSET["init_check"])
    lin = torch.nn.Linear(256, 256)
    ref.helpers.init_weights(lin)
    w = lin.weight.detach().double().numpy()
    sigma = 1.0 / (2.0 * np.sqrt(256))
    out["init_check/frac_beyond_2sigma"] = np.float64((np.abs(w) > 2 * sigma).mean())
    out["init_check/std_over_sigma"] = np.float64(w.std() / sigma)
    out["init_check/bias_max_abs"] = np.float64(np.abs(lin.bias.detach().numpy()).max())
    out["init_check/weight_sample"] = _np(lin.weight[0, :16])


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _documented_form(key: str, param_names: set[str]) -> str:
    """The key as the docstring spells it: parameter names and schedules as placeholders."""
    head, _, last = key.rpartition("/")
    if last in param_names:
        key = f"{head}/<name>"
    key = re.sub(r"^sched/(cosine|linear|vp)/", "sched/<sched>/", key)
    key = re.sub(r"^(behave|eval)/(x_T|noise|candidates|q_min|best_idx|action|draw_tags)$", r"<s>/\2", key)
    return key


def write_npz(path: Path, arrays: dict[str, np.ndarray]):
    """Like np.savez_compressed, but with sorted keys and a fixed timestamp: byte-reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def reference_commit(clone: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clone", type=Path, help="path of a clone of wadx2019/qvpo")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "reference.npz")
    parser.add_argument("--commit", default=None, help="reference commit, if the clone is not a git repo")
    args = parser.parse_args(argv)

    # One thread: reproducible float reductions, and a light load on a shared machine.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    ref = load_reference(args.clone)
    weights = make_weights(ref)

    out: dict[str, np.ndarray] = {}
    actor_shapes = {n: tuple(p.shape) for n, p in ref.model.Model(OBS, ACT).named_parameters()}
    critic_shapes = {n: tuple(p.shape) for n, p in ref.model.Critic(OBS, ACT).named_parameters()}
    for net in ("actor", "critic", "actor_target", "critic_target"):
        for name, value in weights[net].items():
            out[f"init/{net}/{name}"] = value

    piece_schedules(ref, out)
    piece_network(ref, weights, out)
    piece_sampler(ref, weights, out, "behave", eval_mode=False)
    piece_sampler(ref, weights, out, "eval", eval_mode=True)
    tape, log = piece_train(ref, weights, out)
    piece_train_no_entropy(ref, weights, out, tape, log)
    piece_q_transforms(ref, out)
    piece_init_weights(ref, out)

    settings = dict(SETTINGS, state_dim=OBS, action_dim=ACT, batch_size=BATCH, hidden_size=HIDDEN,
                    time_dim=TIME_DIM, gamma=GAMMA, terminal_rows=list(TERMINAL_ROWS),
                    torch_seed_offsets=SEED_OFFSET)
    shape_str = lambda s: ",".join(map(str, s))  # noqa: E731
    out.update({
        "meta/commit": np.array(reference_commit(args.clone, args.commit)),
        "meta/torch_version": np.array(torch.__version__),
        "meta/numpy_version": np.array(np.__version__),
        "meta/seed_numpy": np.int64(SEED_NUMPY), "meta/seed_torch": np.int64(SEED_TORCH),
        "meta/weight_gain": np.float64(WEIGHT_GAIN), "meta/bias_std": np.float64(BIAS_STD),
        "meta/settings_json": np.array(json.dumps(settings, sort_keys=True)),
        "meta/actor_param_names": np.array(list(actor_shapes)),
        "meta/actor_param_shapes": np.array([shape_str(s) for s in actor_shapes.values()]),
        "meta/critic_param_names": np.array(list(critic_shapes)),
        "meta/critic_param_shapes": np.array([shape_str(s) for s in critic_shapes.values()]),
        "meta/std_is_unbiased": np.bool_(True),
    })

    # Floats as float32 (torch's own dtype), except the few float64 statistics documented as such.
    for key, value in out.items():
        value = np.asarray(value)
        float64_ok = key.startswith(("meta/", "init_check/"))
        if value.dtype.kind == "f" and value.dtype != np.float32 and not float64_ok:
            raise AssertionError(f"{key}: unexpected dtype {value.dtype}")
        out[key] = value

    params = set(actor_shapes) | set(critic_shapes)
    forms = {_documented_form(k, params) for k in out}
    undocumented = sorted(f for f in forms if f not in __doc__)
    assert not undocumented, f"keys missing from the docstring: {undocumented}"

    write_npz(args.out, out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes, {len(out)} arrays)")


if __name__ == "__main__":
    main()

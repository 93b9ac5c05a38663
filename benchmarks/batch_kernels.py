"""Prototype: compiled, GIL-free batch paths for Thompson sampling and UCB1 (not part of the package).

The shipped policies sample a batch of rows with numpy: ``Generator.beta`` with
array parameters holds the GIL, and UCB1 makes some twenty passes over the
(R, K) arrays per step. These kernels loop over the rows in compiled code,
drawing from the *same* bit generator in the *same* order as the numpy path,
so decisions are bit-identical (``bench_sim.py`` checks it before timing).
They show what the simulator gains if the policies adopt such a batch path.
"""

from __future__ import annotations

import numba
import numpy as np

from banditkit.policies import UCB1, ThompsonSampling, _jit
from banditkit.policies._jit_kernels import _generator, ucb1_argmax


@numba.njit(nogil=True, cache=True)
def beta_argmax_rows(pointers, alpha, beta, mask, out):
    """Per row, the arm of the largest Beta draw among allowed arms; draws row by row, arm by arm."""
    rng = _generator(pointers)
    shared = alpha.shape[0] == 1
    for row in range(mask.shape[0]):
        source = 0 if shared else row
        best_arm, best = -1, -np.inf
        for arm in range(mask.shape[1]):
            draw = rng.beta(alpha[source, arm], beta[source, arm])
            if mask[row, arm] and (best_arm < 0 or draw > best):
                best_arm, best = arm, draw
        out[row] = best_arm


@numba.njit(nogil=True, cache=True)
def ucb1_argmax_rows(pointers, pulls, reward_sums, mask, out):
    """UCB1's choice per row, ties broken with K uniforms per row as the numpy path does."""
    shared = pulls.shape[0] == 1
    for row in range(mask.shape[0]):
        source = 0 if shared else row
        out[row] = ucb1_argmax(pointers, pulls[source:source + 1], reward_sums[source:source + 1],
                               mask[row:row + 1])


class BatchThompsonSampling(ThompsonSampling):
    """ThompsonSampling whose batch ``sample`` runs :func:`beta_argmax_rows`."""

    def sample(self, state, rng, mask, context=None):
        alpha, beta = self.posterior(state)
        out = np.empty(mask.shape[0], dtype=np.intp)
        beta_argmax_rows(_jit.generator_pointers(rng), alpha, beta, np.ascontiguousarray(mask), out)
        return out


class BatchUCB1(UCB1):
    """UCB1 whose batch ``sample`` runs :func:`ucb1_argmax_rows`."""

    def sample(self, state, rng, mask, context=None):
        out = np.empty(mask.shape[0], dtype=np.intp)
        ucb1_argmax_rows(_jit.generator_pointers(rng), state["pulls"], state["reward_sums"],
                         np.ascontiguousarray(mask), out)
        return out

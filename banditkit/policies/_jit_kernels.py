"""Compiled one-row kernels; each mirrors a numpy path in its policy module draw for draw."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import cgutils, types
from numba.core.extending import intrinsic

_GENERATOR = types.NumPyRandomGeneratorType("generator")
_BIT_GENERATOR = types.NumPyRandomBitGeneratorType("bit_generator")


@intrinsic
def _generator(typingctx, pointers):
    """A numba Generator over an existing bit generator, from the addresses in ``pointers``.

    numba's own unboxing of a Generator re-reads these addresses through
    ctypes on every call (~16 µs); building the struct from cached integers
    costs nothing and draws from the very same bit generator state.
    """

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])

        def load(index):
            return builder.load(cgutils.gep(builder, array.data, index))

        bit_generator = cgutils.create_struct_proxy(_BIT_GENERATOR)(context, builder)
        bit_generator.state_address = load(0)
        bit_generator.state = load(1)
        bit_generator.fnptr_next_uint64 = load(2)
        bit_generator.fnptr_next_uint32 = load(3)
        bit_generator.fnptr_next_double = load(4)
        bit_generator.bit_generator = load(5)
        generator = cgutils.create_struct_proxy(_GENERATOR)(context, builder)
        generator.bit_generator = bit_generator._getvalue()
        return generator._getvalue()

    return _GENERATOR(pointers), codegen


@numba.njit(cache=True)
def beta_argmax(pointers, alpha, beta, mask):
    """Index of the largest Beta(alpha, beta) draw among allowed arms; draws every arm in order."""
    rng = _generator(pointers)
    best_arm, best = -1, -np.inf
    for arm in range(alpha.shape[0]):
        draw = rng.beta(alpha[arm], beta[arm])
        if mask[arm] and (best_arm < 0 or draw > best):
            best_arm, best = arm, draw
    return best_arm


@numba.njit(cache=True)
def random_tie_argmax(pointers, scores, mask):
    """Argmax over allowed arms, ties broken by one uniform key per arm (largest key wins)."""
    rng = _generator(pointers)
    best = -np.inf
    for arm in range(scores.shape[0]):
        if mask[arm] and scores[arm] > best:
            best = scores[arm]
    best_arm, best_key = -1, -2.0
    for arm in range(scores.shape[0]):
        key = rng.random()
        if mask[arm] and scores[arm] == best and key > best_key:
            best_arm, best_key = arm, key
    return best_arm


@numba.njit(cache=True)
def ucb1_argmax(pointers, pulls, reward_sums, mask):
    """UCB1 choice for one state row: untried arms first, ties broken at random."""
    total = 0.0
    for arm in range(pulls.shape[0]):
        total += pulls[arm]
    log_total = math.log(total) if total > 0 else 0.0
    scores = np.empty(pulls.shape[0])
    for arm in range(pulls.shape[0]):
        if pulls[arm] > 0:
            scores[arm] = reward_sums[arm] / pulls[arm] + math.sqrt(2.0 * log_total / pulls[arm])
        else:
            scores[arm] = np.inf
    return random_tie_argmax(pointers, scores, mask)

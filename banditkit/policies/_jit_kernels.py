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


@numba.njit(nogil=True, cache=True)
def beta_argmax(pointers, alpha, beta, mask, out):
    """Per row, the arm of the largest Beta(alpha, beta) draw among allowed arms, into ``out``.

    Draws row by row, every arm in order (as numpy's ``beta(alpha, beta, size=mask.shape)``);
    a one-row state serves every row.
    """
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
def _bernoulli_thompson_row(rng, pulls, successes, prior_alpha, prior_beta, source, mask_row):
    """The largest posterior draw among allowed arms of state row ``source``; draws every arm in order."""
    best_arm, best = -1, -np.inf
    for arm in range(mask_row.shape[0]):
        draw = rng.beta(prior_alpha + successes[source, arm], prior_beta + pulls[source, arm] - successes[source, arm])
        if mask_row[arm] and (best_arm < 0 or draw > best):
            best_arm, best = arm, draw
    return best_arm


@numba.njit(nogil=True, cache=True)
def bernoulli_thompson_argmax(pointers, pulls, successes, prior_alpha, prior_beta, mask, out):
    """beta_argmax on the posterior Beta(prior_alpha + s, prior_beta + n - s), formed as numpy forms it."""
    rng = _generator(pointers)
    shared = pulls.shape[0] == 1
    for row in range(mask.shape[0]):
        out[row] = _bernoulli_thompson_row(
            rng, pulls, successes, prior_alpha, prior_beta, 0 if shared else row, mask[row]
        )


@numba.njit(cache=True)
def bernoulli_thompson_choice(pointers, pulls, successes, prior_alpha, prior_beta, mask):
    """bernoulli_thompson_argmax for one request on state row 0."""
    return _bernoulli_thompson_row(_generator(pointers), pulls, successes, prior_alpha, prior_beta, 0, mask[0])


@numba.njit(cache=True)
def _accept(arm, row, logged, rewards, pulls, reward_sums, accepted, steps):
    """One row of a replay loop: if the decided ``arm`` is the logged one, learn its reward and note the row.

    Returns the rows accepted so far.
    """
    if arm != logged[row]:
        return steps
    pulls[0, arm] += 1.0
    reward_sums[0, arm] += rewards[row]
    accepted[steps] = row
    return steps + 1


@numba.njit(cache=True)
def bernoulli_thompson_replay(pointers, pulls, successes, prior_alpha, prior_beta, mask, logged, rewards, accepted):
    """Replay rows in order on state row 0: bernoulli_thompson_choice per row, the counts of an accepted row added.

    pulls, successes (1, K) are updated in place; mask (K,); logged (n,) arm indices; rewards (n,) in [0, 1].
    Accepted row positions go to ``accepted`` until it is full; returns how many.
    """
    rng = _generator(pointers)
    steps = 0
    for row in range(logged.shape[0]):
        if steps == accepted.shape[0]:
            break
        arm = _bernoulli_thompson_row(rng, pulls, successes, prior_alpha, prior_beta, 0, mask)
        steps = _accept(arm, row, logged, rewards, pulls, successes, accepted, steps)
    return steps


@numba.njit(nogil=True, cache=True)
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


@numba.njit(nogil=True, cache=True)
def _ucb1_row(pointers, pulls, reward_sums, source, mask_row, scores):
    """UCB1's choice from state row ``source``: untried arms first, ties broken with K uniforms."""
    n_arms = pulls.shape[1]
    total = 0.0
    for arm in range(n_arms):
        total += pulls[source, arm]
    log_total = math.log(max(total, 1.0))
    for arm in range(n_arms):
        if pulls[source, arm] > 0:
            scores[arm] = reward_sums[source, arm] / pulls[source, arm] + math.sqrt(
                2.0 * log_total / pulls[source, arm]
            )
        else:
            scores[arm] = np.inf
    return random_tie_argmax(pointers, scores, mask_row)


@numba.njit(nogil=True, cache=True)
def ucb1_argmax(pointers, pulls, reward_sums, mask, out):
    """UCB1's choice per row, into ``out``; a one-row state serves every row."""
    shared = pulls.shape[0] == 1
    scores = np.empty(pulls.shape[1])
    for row in range(mask.shape[0]):
        out[row] = _ucb1_row(pointers, pulls, reward_sums, 0 if shared else row, mask[row], scores)


@numba.njit(cache=True)
def ucb1_choice(pointers, pulls, reward_sums, mask):
    """UCB1's choice for one request on state row 0."""
    return _ucb1_row(pointers, pulls, reward_sums, 0, mask[0], np.empty(pulls.shape[1]))


@numba.njit(cache=True)
def ucb1_replay(pointers, pulls, reward_sums, mask, logged, rewards, accepted):
    """Replay rows in order on state row 0: ucb1_choice per row, the counts of an accepted row added.

    As :func:`bernoulli_thompson_replay`: pulls, reward_sums (1, K) updated in place; mask (K,); logged (n,);
    rewards (n,) in [0, 1]; accepted row positions into ``accepted`` until it is full; returns how many.
    """
    scores = np.empty(pulls.shape[1])
    steps = 0
    for row in range(logged.shape[0]):
        if steps == accepted.shape[0]:
            break
        arm = _ucb1_row(pointers, pulls, reward_sums, 0, mask, scores)
        steps = _accept(arm, row, logged, rewards, pulls, reward_sums, accepted, steps)
    return steps


@numba.njit(cache=True)
def _empirical_mean(pulls, reward_sums, arm):
    return reward_sums[0, arm] / pulls[0, arm] if pulls[0, arm] > 0 else 0.0


@numba.njit(cache=True)
def inverse_cdf(probabilities, point):
    """``base.inverse_cdf`` for one row: the same sums, the same rule for a point past the total."""
    total = 0.0
    chosen = 0
    last = probabilities.shape[0] - 1
    for arm in range(probabilities.shape[0]):
        total += probabilities[arm]
        if total <= point:
            chosen += 1
        if probabilities[arm] > 0:
            last = arm
    return last if chosen == probabilities.shape[0] else chosen


@numba.njit(cache=True)
def _categorical(rng, probabilities):
    """One draw from ``probabilities`` (K,) at one uniform, as ``base.categorical`` does for one row."""
    return inverse_cdf(probabilities, rng.random())


@numba.njit(cache=True)
def _softmax(logits, mask):
    """Exp-normalize over allowed entries, as ``softmax.masked_softmax`` does for one row."""
    n_arms = logits.shape[0]
    largest = -np.inf
    for arm in range(n_arms):
        if mask[arm] and logits[arm] > largest:
            largest = logits[arm]
    weights = np.zeros(n_arms)
    total = 0.0
    for arm in range(n_arms):
        if mask[arm]:
            weights[arm] = math.exp(logits[arm] - largest)
            total += weights[arm]
    return weights / total


@numba.njit(cache=True)
def _epsilon_greedy_row(pointers, pulls, reward_sums, epsilon, decay, mask_row, uniform, means):
    """Explore iff u < epsilon_t (uniform allowed arm), else the best mean with random ties; state row 0.

    Draws u, the uniform arm's point and the K tie-breaking keys every time; uniform, means (K,) are scratch.
    """
    rng = _generator(pointers)
    n_arms = pulls.shape[1]
    steps = 0.0
    allowed = 0
    for arm in range(n_arms):
        steps += pulls[0, arm]
        allowed += mask_row[arm]
    explore = rng.random() < epsilon / (1.0 + decay * steps)
    for arm in range(n_arms):
        uniform[arm] = mask_row[arm] / allowed
        means[arm] = _empirical_mean(pulls, reward_sums, arm)
    uniform_arm = _categorical(rng, uniform)
    greedy_arm = random_tie_argmax(pointers, means, mask_row)
    return uniform_arm if explore else greedy_arm


@numba.njit(cache=True)
def epsilon_greedy_choice(pointers, pulls, reward_sums, epsilon, decay, mask):
    """Epsilon-greedy's choice for one request on state row 0."""
    n_arms = pulls.shape[1]
    return _epsilon_greedy_row(
        pointers, pulls, reward_sums, epsilon, decay, mask[0], np.empty(n_arms), np.empty(n_arms)
    )


@numba.njit(cache=True)
def epsilon_greedy_replay(pointers, pulls, reward_sums, epsilon, decay, mask, logged, rewards, accepted):
    """Replay rows in order on state row 0: epsilon_greedy_choice per row, the counts of an accepted row added.

    As :func:`bernoulli_thompson_replay`, rewards as they come; epsilon_t counts the rows accepted so far too.
    """
    uniform, means = np.empty(pulls.shape[1]), np.empty(pulls.shape[1])
    steps = 0
    for row in range(logged.shape[0]):
        if steps == accepted.shape[0]:
            break
        arm = _epsilon_greedy_row(pointers, pulls, reward_sums, epsilon, decay, mask, uniform, means)
        steps = _accept(arm, row, logged, rewards, pulls, reward_sums, accepted, steps)
    return steps


@numba.njit(cache=True)
def softmax_choice(pointers, pulls, reward_sums, temperature, anneal, mask):
    """Draw from softmax(mean / temperature_t) over allowed arms."""
    rng = _generator(pointers)
    n_arms = pulls.shape[1]
    steps = 0.0
    for arm in range(n_arms):
        steps += pulls[0, arm]
    current = temperature / (1.0 + anneal * steps)
    logits = np.empty(n_arms)
    for arm in range(n_arms):
        logits[arm] = _empirical_mean(pulls, reward_sums, arm) / current
    return _categorical(rng, _softmax(logits, mask[0]))


@numba.njit(cache=True)
def exp3_probabilities(log_weights, gamma, mask):
    """(1 - gamma) softmax(log_weights) + gamma / K over the allowed arms of state row 0, shape (1, K)."""
    n_arms = log_weights.shape[1]
    allowed = 0
    for arm in range(n_arms):
        allowed += mask[0, arm]
    probabilities = (1.0 - gamma) * _softmax(log_weights[0], mask[0])
    for arm in range(n_arms):
        probabilities[arm] += gamma * mask[0, arm] / allowed
    return probabilities.reshape(1, n_arms)


@numba.njit(cache=True)
def exp3_choice(pointers, log_weights, gamma, mask):
    """Draw from :func:`exp3_probabilities`."""
    return _categorical(_generator(pointers), exp3_probabilities(log_weights, gamma, mask)[0])


@numba.njit(cache=True)
def sliding_window_ucb_argmax(pointers, pulls, reward_sums, steps, window, xi, mask):
    """Sliding-window UCB choice for state row 0: arms absent from the window first."""
    n_arms = pulls.shape[1]
    log_horizon = math.log(max(float(min(steps[0], window)), 1.0))
    scores = np.empty(n_arms)
    for arm in range(n_arms):
        if pulls[0, arm] > 0.5:
            scores[arm] = reward_sums[0, arm] / pulls[0, arm] + math.sqrt(xi * log_horizon / pulls[0, arm])
        else:
            scores[arm] = np.inf
    return random_tie_argmax(pointers, scores, mask[0])


@numba.njit(cache=True)
def _bernoulli_kl(p, q):
    success = p * math.log(p / q) if p > 0 else 0.0
    failure = (1 - p) * math.log((1 - p) / (1 - q)) if p < 1 else 0.0
    return success + failure


@numba.njit(cache=True)
def kl_ucb_argmax(pointers, pulls, reward_sums, c, mask):
    """KL-UCB choice for state row 0 by the same 50 bisection steps as the numpy path."""
    n_arms = pulls.shape[1]
    total = 0.0
    for arm in range(n_arms):
        total += pulls[0, arm]
    log_total = math.log(max(total, 1.0))
    log_log = math.log(max(log_total, 1.0))
    scores = np.empty(n_arms)
    for arm in range(n_arms):
        if pulls[0, arm] <= 0:
            scores[arm] = np.inf
            continue
        budget = (log_total + c * log_log) / pulls[0, arm]
        mean = min(max(reward_sums[0, arm] / pulls[0, arm], 0.0), 1.0)
        low, high = mean, 1.0
        for _ in range(50):
            middle = (low + high) / 2
            if _bernoulli_kl(mean, middle) <= budget:
                low = middle
            else:
                high = middle
        scores[arm] = low
    return random_tie_argmax(pointers, scores, mask[0])


@numba.njit(cache=True)
def gaussian_thompson_argmax(pointers, pulls, sums, sq_sums, prior_mean, prior_count, prior_shape, prior_rate, mask):
    """Largest Student-t posterior draw of the mean among allowed arms; draws every arm in order.

    A NaN ``prior_mean`` or ``prior_rate`` is set from all arms' rewards, as ``GaussianThompsonSampling.prior``;
    with a NaN ``prior_rate`` an arm's posterior is widened to the common-variance one, as in its ``posterior``.
    """
    rng = _generator(pointers)
    widen = math.isnan(prior_rate)
    all_pulls = 0.0
    if math.isnan(prior_mean) or widen:
        all_sums, all_sq_sums = 0.0, 0.0
        for arm in range(pulls.shape[1]):
            all_pulls += pulls[0, arm]
            all_sums += sums[0, arm]
            all_sq_sums += sq_sums[0, arm]
        pooled_mean = all_sums / all_pulls if all_pulls > 0 else 0.0
        pooled_spread = max(all_sq_sums - all_sums * pooled_mean, 0.0)
        variance = pooled_spread / max(all_pulls - 1.0, 1.0) if pooled_spread > 0 else 1.0
        if math.isnan(prior_mean):
            prior_mean = pooled_mean
        if widen:
            prior_rate = prior_shape * variance
    common_variance = 1.0
    if widen:
        common = 0.0
        for arm in range(pulls.shape[1]):
            n, total = pulls[0, arm], sums[0, arm]
            mean = total / n if n > 0 else 0.0
            spread = max(sq_sums[0, arm] - total * mean, 0.0)
            common += spread + prior_count * n * (mean - prior_mean) ** 2 / (prior_count + n)
        if common > 0:
            common_variance = common / all_pulls
    best_arm, best = -1, -np.inf
    for arm in range(pulls.shape[1]):
        n, total = pulls[0, arm], sums[0, arm]
        count = prior_count + n
        loc = (prior_count * prior_mean + total) / count
        mean = total / n if n > 0 else 0.0
        spread = max(sq_sums[0, arm] - total * mean, 0.0)
        shape = prior_shape + n / 2
        rate = prior_rate + spread / 2 + prior_count * n * (mean - prior_mean) ** 2 / (2 * count)
        scale, dof = math.sqrt(rate / (shape * count)), 2 * shape
        if widen:
            common_scale = math.sqrt(common_variance / count)
            if common_scale > scale:
                scale, dof = common_scale, 2 * prior_shape + all_pulls
        draw = loc + scale * rng.standard_t(dof)
        if mask[0, arm] and (best_arm < 0 or draw > best):
            best_arm, best = arm, draw
    return best_arm

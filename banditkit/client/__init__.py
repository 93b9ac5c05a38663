"""Python client of the decision service: safe retries, a circuit breaker, batched rewards, local decisions.

    from banditkit.client import Client
    c = Client("http://bandits:8000", token="…")
    d = c.decide("hero", unit="u42")          # retried safely: the request_id makes it one logged decision
    c.reward(d, 1.0)                          # idempotent: retried safely too
    local = c.local("hero")                   # pulls the model, decides in-process, ships the log
    local.decide(unit="u42")                  # the arm and propensity the server would give, bit for bit

Retries: connection errors, timeouts and 5xx answers are retried with exponential backoff (``Retry-After``
honoured). That is safe because a reward is accepted once per decision (a retry gets the same answer) and a
decision carries a ``request_id`` the service answers from its log on a retry, in any worker and after a
restart. When the service stays unreachable, the circuit breaker opens and decisions are answered locally
with the experiment's default arm and ``fallback=True`` (never a random arm); they are logged to the service
(``POST …/decisions/log``) once it answers again, so rewards for them join like any other.

Needs httpx (the ``service`` extra); ``import banditkit`` does not import this module.
"""

from ._core import CircuitBreaker, Decision, Retry, ServiceError, Unavailable, new_decision_id
from .aio import AsyncBatchSender, AsyncClient, AsyncLocalDecider, AsyncRewardSender
from .sync import BatchSender, Client, LocalDecider, RewardSender

__all__ = [
    "AsyncBatchSender",
    "AsyncClient",
    "AsyncLocalDecider",
    "AsyncRewardSender",
    "BatchSender",
    "CircuitBreaker",
    "Client",
    "Decision",
    "LocalDecider",
    "Retry",
    "RewardSender",
    "ServiceError",
    "Unavailable",
    "new_decision_id",
]

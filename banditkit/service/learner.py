"""The learner of the Redis store: the reward stream into the model, one atomic step per batch.

Serving workers only log decisions and claim rewards (see
:mod:`.stores.redis_keys`); ``banditkit learn`` runs this module. For every
experiment it holds a lease, reads the rewards delivered to it before (after a
crash) and then new ones, and adds their delta with the functions the
in-process stores use (:mod:`.model`, so guardrails act here too and learning
is bit-identical). The new state, the version, the reward offset and the
stream acknowledgement are written together by one script that checks the
lease and the version, so a learner killed at any point neither loses a reward
nor counts one twice: entries at or below the reward offset are already in the
model and are acknowledged without being applied. It also applies the default
reward when attribution windows close and, if asked, archives old decisions to
Parquet (:mod:`.archive`).

Every update writes the experiment's whole state (packed binary,
:func:`.stores.redis_keys.pack_state`), and every serving worker reads it whole
to follow the new version, so a learner that streams paces each experiment:
after writing a state of B bytes it learns that experiment again only
B / ``state_bytes_per_s`` seconds later (an experiment of a few kilobytes is not
held back; one of 8.4 MB at most every 2.1 s, with all the rewards that arrived
meanwhile in one update). A worker reads and rebuilds an 8.4 MB model in about
15 ms of a worker thread, most of it with the interpreter lock released; Redis
copies the 8.4 MB once per write and once per worker's read.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bandit import Bandit
from . import archive
from .candidates import candidate_model
from .model import apply_rewards, guarded, join, reward_delta, served_state, split
from .stores.base import CANARY_KEYS, CANDIDATE_PREFIX, DELETED, DecisionRecord, status_of
from .stores.planner import CANDIDATE, MAIN, Routes, candidate_arrays
from .stores.redis_keys import (
    APPLY_BATCH,
    ARCHIVE_TRIM,
    CLAIM_REWARDS,
    DEFAULT_PREFIX,
    LEARNERS,
    LEASE_LOST,
    READ_REWARDS,
    RENEW_LEASE,
    VERSION_MOVED,
    Keys,
    apply_keys,
    claim_args,
    claim_keys,
    connect,
    experiments_key,
    pack_state,
    parse_meta,
    pending_policy,
    read_keys,
    read_meta,
    refusal,
)

logger = logging.getLogger("banditkit.learner")

#: Expired attribution windows settled by one claim script at most.
SETTLE_BATCH = 2000
#: Bytes of state a streaming learner writes per second and experiment at most (see the module docstring).
STATE_BYTES_PER_S = 4_000_000


class LeaseLost(Exception):
    """Another learner holds the experiment's lease now; this one must not write to it."""


class _Gone(Exception):
    """The experiment has no meta (purged, or its creation never finished) or was deleted: nothing to learn."""


@dataclass
class Pass:
    """What one :meth:`Learner.step` did, summed over experiments."""

    applied: int = 0  # rewards added to a model
    acknowledged: int = 0  # stream entries already in the model (delivered again), acknowledged only
    skipped: int = 0  # rewards that cannot be learned (arm removed since, invalid value), acknowledged
    defaulted: int = 0  # default rewards claimed at window close
    archived: int = 0  # decisions written to Parquet and removed from Redis
    batches: int = 0  # atomic model updates written
    leased_elsewhere: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """True when the pass found work (so the next one should not wait)."""
        return bool(self.applied or self.acknowledged or self.skipped or self.defaulted or self.archived)

    def add(self, other: Pass) -> None:
        for name in ("applied", "acknowledged", "skipped", "defaulted", "archived", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Held:
    """An experiment whose lease this learner holds, with the model as of ``version``."""

    name: str
    keys: Keys
    renewed_at: float
    window_s: float = 0.0
    default_reward: float | None = None
    bandit: Bandit | None = None
    version: int = -1
    reward_offset: str = "0-0"
    archived_at: float = float("-inf")
    state_bytes: int = 0  # bytes of the stored state
    written_at: float = float("-inf")  # time.monotonic() of this learner's last state write
    stale: bool = True  # the Bandit is not loaded, or may hold a batch Redis does not
    claimed: bool = False  # the entries other learners were delivered are claimed
    learns: bool = True  # False while a reward source feeds the policy: rewards are acknowledged, not learned
    #: The stored model's canary entries (candidate, lineage), the candidate's Bandit and who learns what.
    canary: dict = field(default_factory=dict)
    candidate: Bandit | None = None
    routes: Routes = field(default_factory=Routes)


def default_learner_id() -> str:
    """``host-pid-random``: unique per process, readable in ``XINFO CONSUMERS`` and the lease key."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Learner:
    """Learns every experiment of one Redis store whose lease it can hold.

    Parameters
    ----------
    client : redis.Redis or redis.cluster.RedisCluster
        Made with ``decode_responses=True`` (as :func:`.stores.redis_keys.connect` does).
    prefix : str
        Key prefix of the store (the URL's ``?prefix=``).
    learner_id : str, optional
        Consumer name and lease value; unique per process (default :func:`default_learner_id`).
    lease_ttl_s, renew_s : float
        The lease expires ``lease_ttl_s`` after its last renewal; the holder renews it every ``renew_s``.
    batch_size : int
        Stream entries read and applied per atomic step.
    archive_dir : path, optional
        Archive decisions older than the window plus ``retention_s`` seconds to Parquet partitions here.
    archive_every_s : float
        While streaming, archive an experiment at most this often (``--once`` always archives).
    archive_batch_size : int
        Decisions written to Parquet and trimmed from Redis per step.
    state_bytes_per_s : float
        While streaming, an experiment whose state takes B bytes is learned at most every
        B / ``state_bytes_per_s`` seconds (:meth:`step` and ``--once`` learn everything at once).
    """

    def __init__(
        self,
        client,
        prefix: str = DEFAULT_PREFIX,
        learner_id: str | None = None,
        *,
        lease_ttl_s: float = 5.0,
        renew_s: float = 1.0,
        batch_size: int = 10_000,
        archive_dir: str | Path | None = None,
        retention_s: float = 3600.0,
        archive_every_s: float = 10.0,
        archive_batch_size: int = archive.ARCHIVE_BATCH,
        state_bytes_per_s: float = STATE_BYTES_PER_S,
    ) -> None:
        if not 0 < renew_s < lease_ttl_s:
            raise ValueError(f"renew_s must be in (0, lease_ttl_s={lease_ttl_s}), got {renew_s!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if retention_s < 0:
            raise ValueError(f"retention_s must be >= 0, got {retention_s!r}")
        if not state_bytes_per_s > 0:
            raise ValueError(f"state_bytes_per_s must be > 0, got {state_bytes_per_s!r}")
        self.client = client
        self.prefix = prefix
        self.learner_id = learner_id or default_learner_id()
        self.lease_ttl_ms = max(1, int(lease_ttl_s * 1000))
        self.renew_s = renew_s
        self.batch_size = batch_size
        self.archive_dir = None if archive_dir is None else Path(archive_dir)
        self.retention_s = retention_s
        self.archive_every_s = archive_every_s
        self.archive_batch_size = archive_batch_size
        self.state_bytes_per_s = state_bytes_per_s
        self._scripts = {
            name: client.register_script(text)
            for name, text in (
                ("apply", APPLY_BATCH),
                ("claim", CLAIM_REWARDS),
                ("read", READ_REWARDS),
                ("renew", RENEW_LEASE),
                ("trim", ARCHIVE_TRIM),
            )
        }
        self._held: dict[str, _Held] = {}

    @classmethod
    def from_url(cls, url: str, **options) -> Learner:
        """A learner on the store at ``url`` (``redis://`` or ``redis+cluster://``).

        A bad or unreachable URL raises :class:`.stores.redis_keys.RedisURLError` naming it.
        """
        client, location = connect(url)
        return cls(client, location.prefix, **options)

    # ---- the loop ---------------------------------------------------------------------------------
    def step(self, now: float | None = None, *, archive_now: bool = False, on_archived=None) -> Pass:
        """One pass over every experiment: lease, settle closed windows, learn every reward, archive.

        ``now`` (seconds since the epoch) decides which attribution windows have closed and which
        decisions are old enough to archive; ``archive_now`` archives even if the last archive of an
        experiment is recent; ``on_archived(experiment, rows)`` follows the archive's progress.
        """
        return self._pass(now, True, archive_now, on_archived)

    def run(
        self,
        every: float | None = None,
        once: bool = False,
        *,
        poll_s: float = 0.05,
        stop: threading.Event | None = None,
        on_pass=None,
    ) -> Pass:
        """Learn until ``stop`` is set, or with ``once`` until everything due now is learned and archived.

        Streaming (poll every ``poll_s`` when idle), or a pass every ``every`` seconds (batch updates).

        With ``once``, experiments leased by another learner are waited for (a learner that died keeps its
        lease for at most its time to live); :class:`LeaseLost` names those another live learner still
        holds after twice that long. Redis being unreachable while streaming, or refusing writes because of its
        own condition (:func:`.stores.redis_keys.refusal`: out of memory, a full disk), is logged and retried every
        second. ``on_pass(report)`` is called after every streaming pass. Returns the summed passes.
        """
        stop = stop or threading.Event()
        if once:
            return self._until_leased(lambda: self._pass(None, True, True, None), stop)
        from redis.exceptions import ConnectionError, ResponseError, TimeoutError

        total = Pass()
        while not stop.is_set():
            try:
                report = self._pass(None, True, False, None, paced=True)
            except (ConnectionError, TimeoutError, ResponseError) as error:
                cause = str(error) if not isinstance(error, ResponseError) else refusal(error)
                if cause is None:
                    raise
                logger.warning("Redis unavailable (%s); retrying in 1 s", cause)
                stop.wait(1.0)
                continue
            total.add(report)
            if on_pass is not None:
                on_pass(report)
            if every is not None:
                stop.wait(every)
            elif not report.busy:
                stop.wait(poll_s)
        return total

    def archive_pass(self, now: float | None = None, *, on_archived=None, stop: threading.Event | None = None) -> Pass:
        """Settle closed windows and archive every experiment once (no learning): ``banditkit archive``.

        Needs ``archive_dir``; waits for leases like ``run(once=True)``.
        """
        if self.archive_dir is None:
            raise ValueError("archive_pass needs archive_dir")
        return self._until_leased(lambda: self._pass(now, False, True, on_archived), stop or threading.Event())

    def _until_leased(self, one_pass, stop: threading.Event) -> Pass:
        """Repeat ``one_pass`` until it reaches every experiment (or another learner keeps one too long)."""
        deadline = time.monotonic() + 2 * self.lease_ttl_ms / 1000 + self.renew_s
        total = Pass()
        while True:
            report = one_pass()
            total.add(report)
            if not report.leased_elsewhere or stop.is_set():
                total.leased_elsewhere = report.leased_elsewhere
                return total
            if time.monotonic() > deadline:
                raise LeaseLost(f"experiments {report.leased_elsewhere} are leased by another learner")
            stop.wait(0.1)

    def _pass(self, now: float | None, learn: bool, archive_now: bool, on_archived, paced: bool = False) -> Pass:
        """One pass over the experiments.

        ``paced``: skip learning the experiments whose last state write is too recent for their state's size
        (:attr:`state_bytes_per_s`).
        """
        report = Pass()
        names = sorted(self.client.smembers(experiments_key(self.prefix)))
        for gone in set(self._held) - set(names):  # deleted (or purged) since the last pass: its lease goes
            self._release(self._held.pop(gone))
        for name in names:
            try:
                held = self._lease(name)
                if held is None:
                    report.leased_elsewhere.append(name)
                    continue
                at = time.time() if now is None else now
                report.defaulted += self._settle(held, at)
                if learn and not (paced and self._resting(held)):
                    self._drain(held, report)
                if self.archive_dir is not None and (
                    archive_now or time.monotonic() - held.archived_at >= self.archive_every_s
                ):
                    report.archived += self._archive(held, self.archive_dir, at, on_archived)
            except LeaseLost:
                self._held.pop(name, None)
                report.leased_elsewhere.append(name)
            except _Gone:
                self._release(self._held.pop(name))
        return report

    def _resting(self, held: _Held) -> bool:
        """True while the state last written is too recent to write again (its size over the write rate)."""
        return time.monotonic() - held.written_at < held.state_bytes / self.state_bytes_per_s

    def close(self) -> None:
        """Give up every lease held (they expire in a millisecond), so another learner can start at once."""
        for held in list(self._held.values()):
            self._release(held)
        self._held.clear()

    def _release(self, held: _Held) -> None:
        try:
            self._script("renew", [held.keys.lease], [self.learner_id, 1])
        except Exception:  # the lease expires by itself anyway
            logger.debug("lease of %r not released", held.name, exc_info=True)

    # ---- one experiment ---------------------------------------------------------------------------
    def _archive(self, held: _Held, out: Path, now: float, on_archived) -> int:
        archived = archive.archive_experiment(
            self.client,
            held.keys,
            held.name,
            out,
            cutoff=now - held.window_s - self.retention_s,
            trim=lambda keys, args: self._checked(self._script("trim", keys, [self.learner_id, *args])),
            keep=lambda: self._keep(held),
            on_rows=on_archived,
            batch_size=self.archive_batch_size,
        )
        held.archived_at = time.monotonic()
        return archived

    def _settle(self, held: _Held, now: float) -> int:
        """Claim the default reward of every decision whose window closed; forget the closed windows."""
        keys, claimed = held.keys, 0
        while True:
            ids = self.client.zrangebyscore(keys.due, "-inf", now - held.window_s, start=0, num=SETTLE_BATCH)
            if not ids:
                return claimed
            if held.default_reward is not None:
                claims = [(decision_id, held.default_reward, "default") for decision_id in ids]
                answers = self._script("claim", claim_keys(keys), claim_args(now, held.window_s, held.name, claims))
                claimed += answers[0::2].count("new")
            self.client.zrem(keys.due, *ids)
            if len(ids) < SETTLE_BATCH:
                return claimed

    def _drain(self, held: _Held, report: Pass) -> None:
        """Learn every reward of the stream: the entries delivered to this learner before, then new ones."""
        if held.stale:
            self._load(held)
        start = "0"
        while True:
            self._keep(held)
            entries = self._checked(
                self._script("read", read_keys(held.keys), [self.learner_id, self.batch_size, start])
            )
            if entries:
                self._apply(held, entries, report)
            if start == "0":
                if not entries:
                    start = ">"
            elif len(entries) < self.batch_size:
                return

    def _apply(self, held: _Held, entries: list, report: Pass) -> None:
        """Add the batch's delta to the model and acknowledge it in one script.

        Reload and retry when the model moved (a worker changed arms, or a rollback).
        """
        ids = [entry[0] for entry in entries]
        while True:
            bandit = held.bandit
            assert bandit is not None  # loaded by _drain (a held experiment starts stale)
            first_new = bisect.bisect_right(ids, _stream_key(held.reward_offset), key=_stream_key)
            rows = [entry[1] for entry in entries[first_new:] if entry[1]]
            applied = model = ""
            state = b""
            usable = 0
            if rows and held.learns:
                mine, tried = _routed(held, rows)
                before = guarded(bandit)
                for policy, chosen in ((bandit, mine), (held.candidate, tried)):
                    if policy is None or not chosen:
                        continue
                    arms, values, contexts, propensities = _arrays(policy, chosen)
                    if arms.shape[0]:
                        usable += arms.shape[0]
                        delta = reward_delta(
                            policy.policy, len(policy.arms), served_state(policy), arms, values, contexts, propensities
                        )
                        apply_rewards(policy, delta, arms, values, version=held.version + 1)
                if usable:
                    new_model, arrays = split(bandit)
                    if held.candidate is not None:
                        own = split(held.candidate)[1]
                        arrays.update((CANDIDATE_PREFIX + key, value) for key, value in own.items())
                    state = pack_state(arrays)
                    model = json.dumps({**new_model, **held.canary}) if guarded(bandit) != before else ""
            if first_new < len(ids):
                applied = ids[-1]
            try:
                version = self._script(
                    "apply", apply_keys(held.keys), [self.learner_id, held.version, model, state, applied, *ids]
                )
            except BaseException:
                # The batch is in the Bandit in memory, and in Redis or not (a lost reply): read it again.
                held.stale = True
                raise
            if version == VERSION_MOVED:
                self._load(held)
                continue
            self._checked(version)
            held.version = version
            if state:
                held.state_bytes, held.written_at = len(state), time.monotonic()
            if applied:
                held.reward_offset = applied
            report.batches += 1
            report.applied += usable
            report.skipped += len(rows) - usable
            report.acknowledged += len(ids) - len(rows)
            if model:
                self._guardrail_event(held, bandit)
            return

    def _guardrail_event(self, held: _Held, bandit: Bandit) -> None:
        """Audit a guardrail's change of the model (an arm disabled by its SLO, an abort), as the workers do."""
        event = {
            "experiment": held.name,
            "time": time.time(),
            "policy_version": bandit.version,
            "kind": "guardrail",
            "disabled": dict(bandit.disabled_reasons),
            "aborted": bandit.aborted,
        }
        self.client.rpush(held.keys.events, json.dumps(event))
        logger.warning(
            "guardrail changed experiment %r: disabled %s, aborted %s",
            held.name,
            sorted(bandit.disabled_reasons),
            bandit.aborted,
        )

    # ---- lease and model ----------------------------------------------------------------------------
    def _lease(self, name: str) -> _Held | None:
        """The experiment if this learner holds (or now takes) its lease, else None."""
        keys = Keys.of(self.prefix, name)
        held = self._held.get(name)
        if held is not None:
            try:
                self._keep(held)
            except LeaseLost:
                del self._held[name]
                held = None
        if held is None:
            if not self.client.set(keys.lease, self.learner_id, nx=True, px=self.lease_ttl_ms):
                return None
            held = self._held[name] = _Held(name, keys, time.monotonic())
        if held.stale:
            self._load(held)
        if not held.claimed:  # until the orphans are claimed (a connection error may interrupt it)
            self._take_over(held)
            held.claimed = True
        return held

    def _keep(self, held: _Held) -> None:
        """Renew the lease if ``renew_s`` has passed since the last renewal; :class:`LeaseLost` if it is gone."""
        now = time.monotonic()
        if now - held.renewed_at < self.renew_s:
            return
        if self._script("renew", [held.keys.lease], [self.learner_id, self.lease_ttl_ms]) != 1:
            raise LeaseLost(f"the lease of experiment {held.name!r} expired or was taken")
        held.renewed_at = now

    def _take_over(self, held: _Held) -> None:
        """On taking the lease: make sure the consumer group exists and claim what other learners left.

        That is what they were delivered and did not acknowledge (the lease says they are gone; a learner
        without the lease cannot read, so nothing is delivered to them after this).
        """
        from redis.exceptions import ResponseError

        stream = held.keys.reward_stream
        try:
            self.client.xgroup_create(stream, LEARNERS, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        cursor = "0-0"
        while True:
            cursor = self.client.xautoclaim(stream, LEARNERS, self.learner_id, 0, cursor, count=self.batch_size)[0]
            if cursor == "0-0":
                return

    def _load(self, held: _Held) -> None:
        """The model, version and offsets from meta; :class:`_Gone` when there is no meta."""
        raw = read_meta(self.client, held.keys.meta)
        if not raw:
            raise _Gone(held.name)
        meta = parse_meta(raw)
        if status_of(meta.config) == DELETED:  # deleted while held: its log waits for a purge, nothing to learn
            raise _Gone(held.name)
        held.window_s = float(meta.config["attribution_window_s"])
        default = meta.config.get("default_reward")
        held.default_reward = None if default is None else float(default)
        held.learns = meta.config.get("source") is None
        held.version = meta.version
        held.state_bytes = meta.state_size
        held.reward_offset = meta.reward_offset
        # The learner never draws: any generator will do.
        held.bandit = join(meta.model, meta.state, held.version, np.random.default_rng(0))
        held.canary = {key: meta.model[key] for key in CANARY_KEYS if key in meta.model}
        spec = meta.model.get("candidate")
        held.candidate = (
            None
            if spec is None
            else join(
                candidate_model(meta.model, spec),
                candidate_arrays(meta.state),
                held.version,
                np.random.default_rng(0),
            )
        )
        held.routes = Routes.of_model(meta.model)
        held.stale = False

    def _script(self, name: str, keys: list[str], args: list):
        return self._scripts[name](keys=keys, args=args, client=self.client)

    @staticmethod
    def _checked(answer):
        if answer == LEASE_LOST:
            raise LeaseLost("the lease expired or was taken by another learner")
        return answer


def _arrays(bandit: Bandit, rows: list) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Arm indices, rewards, contexts and propensities of the learnable rewards among reward stream entries.

    ``rows`` are the entries' field lists ``[reward, reward JSON, decision, pending JSON]``. A reward for an
    arm removed since, or (never from a checked worker) a value outside the policy's bounds or a decision
    without a usable context or propensity, cannot be learned: it is left out (and logged).
    """
    if rows[0][0] != "reward" or rows[0][2] != "decision":
        raise ValueError(f"reward stream entries must have the fields reward, decision; got {rows[0][::2]}")
    n = len(rows)
    policy = bandit.policy
    rewards = json.loads("[" + ",".join(row[1] for row in rows) + "]")
    # The decisions (half of the text) only when the policy learns from their propensity or context.
    decisions: list = (
        json.loads("[" + ",".join(row[3] for row in rows) + "]")
        if policy.needs_propensities or policy.contextual
        else []
    )
    index = {arm: i for i, arm in enumerate(bandit.arms)}
    arms = np.fromiter((index.get(reward[2], -1) for reward in rewards), dtype=np.intp, count=n)
    values = np.fromiter((reward[3] for reward in rewards), dtype=np.float64, count=n)
    low, high = policy.reward_bounds
    usable = (arms >= 0) & np.isfinite(values) & (values >= low) & (values <= high)
    propensities = contexts = None
    if policy.needs_propensities:
        propensities = np.fromiter((decision[2] for decision in decisions), dtype=np.float64, count=n)
        usable &= (propensities > 0) & (propensities <= 1)
    if policy.contextual:
        width = bandit.n_features
        assert width is not None  # the service makes contextual Bandits with n_features
        given = [decision[3] for decision in decisions]
        usable &= np.fromiter((context is not None and len(context) == width for context in given), dtype=bool, count=n)
        kept = np.flatnonzero(usable)
        contexts = np.array([given[i] for i in kept], dtype=np.float64).reshape(-1, width)
        finite = np.isfinite(contexts).all(axis=1)
        if not finite.all():
            usable[kept[~finite]] = False
            contexts = contexts[finite]
    if not usable.all():
        logger.error(
            "%d rewards of experiment %r cannot be learned (arm removed since, or invalid value): %s",
            int((~usable).sum()),
            bandit.name,
            [rewards[i][0] for i in np.flatnonzero(~usable)[:5]],
        )
    return arms[usable], values[usable], contexts, None if propensities is None else propensities[usable]


def _routed(held: _Held, rows: list) -> tuple[list, list]:
    """Reward stream entries split by the policy that learns them: the experiment's, and its candidate's.

    An entry whose decision's serving policy is gone (a rolled back candidate, a policy replaced by a
    promotion) is in neither: recorded, not learned. Decisions are read only when canaries ever ran.
    """
    if not held.canary:
        return rows, []
    decisions = json.loads("[" + ",".join(row[3] for row in rows) + "]")
    mine, tried = [], []
    for row, values in zip(rows, decisions, strict=True):
        decision = DecisionRecord("", 0.0, held.name, None, None, "", 0.0, {}, values[5], False, pending_policy(values))
        learner = held.routes.learner(decision)
        if learner == MAIN:
            mine.append(row)
        elif learner == CANDIDATE:
            tried.append(row)
    skipped = len(rows) - len(mine) - len(tried)
    if skipped:
        logger.info(
            "%d rewards of experiment %r served by a policy gone since: recorded, not learned", skipped, held.name
        )
    return mine, tried


def _stream_key(stream_id: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a tuple that sorts like the id."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)

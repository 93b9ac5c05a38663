"""The service's core, independent of HTTP: experiments, decisions, arm changes, versions.

The engine keeps every experiment's Bandit in memory and the store as the
truth: nothing is answered before the store has it. Rewards live in
:mod:`banditkit.service.rewarding`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..assign import assign_rows, contextual_probabilities
from ..bandit import Bandit
from ..errors import BanditkitError
from ..policies import make_policy
from . import candidates, rewarding
from .alerts import open_alerts, remediate
from .archive import remove_archived
from .candidates import Candidate
from .coalesce import Coalescer
from .errors import ConflictError, DeletedNameError, InvalidRequestError, NotFoundError
from .experiment import (
    LARGEST_LINEAR,
    MAX_STATE_BYTES,
    Experiment,
    build_bandit,
    checked_configuration,
    creation_spec,
    restore,
    state_bytes,
)
from .metrics import Metrics
from .model import join, split
from .schemas import (
    MAX_ARMS,
    AlertOut,
    AlertRequest,
    ArmsPatch,
    ArmStatsOut,
    CandidateCreate,
    CandidateOut,
    DecisionRequest,
    DecisionResponse,
    ExperimentCreate,
    ExperimentOut,
    ExperimentPatch,
    LoggedDecision,
    PurgeOut,
    RewardRequest,
    RewardResult,
    SnapshotOut,
    SourceStatusOut,
    StatsOut,
    SupervisorSpec,
)
from .serving import DistributionCache, draw
from .stores import (
    Assignment,
    DecisionRecord,
    ExperimentExistsError,
    ExperimentRecord,
    Store,
)
from .stores.base import (
    ACTIVE,
    ARCHIVED,
    CANDIDATE_PREFIX,
    CURRENT_POLICY,
    DELETED,
    ModelChange,
    ModelMovedError,
    StoreUnavailableError,
    policy_state,
    settled,
    status_of,
    unservable_reason,
    with_status,
)

logger = logging.getLogger("banditkit.service")
#: Attempts at a model change whose version keeps moving (rewards queued before it; another process's writes).
_MODEL_CHANGE_ATTEMPTS = 5


_ID_BITS = random.Random(os.urandom(32))  # seeded once: os.urandom per id costs ~0.1 ms on some VMs
_ID_SEQUENCE = itertools.count()


def new_decision_id() -> str:
    """32 hex digits: milliseconds since the epoch, a 20-bit sequence, 60 random bits.

    Ids sort by time, and in the order they were made within a process.
    """
    sequence = next(_ID_SEQUENCE) & 0xFFFFF
    return f"{int(time.time() * 1000):012x}{sequence:05x}{_ID_BITS.getrandbits(60):015x}"


def request_decision_id(experiment: str, request_id: str) -> str:
    """The decision id of a request carrying a client ``request_id``: ``r`` and 31 hex digits of its SHA-256.

    Derived, not drawn, so a retry names the decision the first attempt logged, in any worker and after a
    restart: the store is the only record of which requests were answered.
    """
    return "r" + hashlib.sha256(f"{experiment}\x00{request_id}".encode()).hexdigest()[:31]


class Engine:
    """Serves every experiment of one store.

    ``refresh_s``: how long a cached action distribution may be served while
    a newer state's is computed in the background (0 = always the newest);
    ``metrics``: where decisions, fallbacks, rewards and store latencies are counted (None: nowhere);
    ``archive_dir``: the Redis learner's Parquet archive, emptied of an experiment when it is purged.
    """

    def __init__(
        self, store: Store, *, refresh_s: float = 0.1, metrics: Metrics | None = None, archive_dir: Path | None = None
    ) -> None:
        self.store = store
        #: Where the Redis learner archives decisions to Parquet (the service's ``archive_dir``): a purge empties it
        #: of the experiment.
        self.archive_dir = archive_dir
        self.refresh_s = refresh_s
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="banditkit-distributions") if refresh_s > 0 else None
        self.experiments: dict[str, Experiment] = {}
        self.recent = rewarding.RecentDecisions()
        self._single_decisions = Coalescer(self._serve)
        self._single_rewards = Coalescer(self.reward)
        # Decision times being written now: the sweeper must not move past a decision not yet visible.
        self._in_flight: dict[object, float] = {}
        self._background: set[asyncio.Task] = set()  # guardrail changes being written (the loop keeps weak refs)
        #: Decisions with a client id being served or logged now: a concurrent retry waits for the first.
        self._pending_ids: dict[str, asyncio.Future] = {}
        #: Called with (experiment, event) after an alert event is written (the webhook queues it; never blocks).
        self.on_alert: Callable[[str, dict], None] | None = None
        #: The supervisor's open alerts per experiment, as lines for ``/stats`` (set by :mod:`.supervisor`).
        self.supervisor_alerts: dict[str, list[str]] = {}
        #: How polling an experiment's reward source goes, for ``/stats`` (set by :mod:`.sources`).
        self.source_status: Callable[[str], SourceStatusOut | None] | None = None
        for record in store.load_experiments():
            if status_of(record.config) != DELETED:
                self.experiments[record.name] = restore(record, refresh_s, self._executor)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def health(self) -> dict[str, str]:
        """The liveness answer, without a round trip to the store.

        Degraded, with the cause, while the store cannot take writes (Redis does not answer, a full disk):
        decisions then fall back to the default arm where they can be logged (Redis's spool) and get 503
        where not; rewards and changes get 503.
        """
        cause = self.store.unavailable_cause
        return {"status": "ok"} if cause is None else {"status": "degraded", "store": "unavailable", "cause": cause}

    def experiment(self, name: str) -> Experiment:
        try:
            return self.experiments[name]
        except KeyError:
            pass
        if not self.store.learns_in_process:  # a shared store: another worker may have created it just now
            record = self.store.load_experiment(name)
            if record is not None and status_of(record.config) != DELETED:
                return self._adopt(record)
        raise NotFoundError(f"experiment {name!r} not found")

    def logged(self, name: str) -> None:
        """Check that ``name``'s log may be read: a served experiment, or a deleted one not purged yet (else 404)."""
        if name not in self.experiments and name not in self.store.deleted_names():
            self.experiment(name)  # a shared store's experiment another worker created, or 404

    # ---- following a shared store ---------------------------------------------------------
    async def follow(self) -> int:
        """Reload the experiments whose stored version moved; how many were reloaded.

        A learner or another worker changed them. One round trip when nothing moved.
        """
        names = list(self.experiments)
        if not names:
            return 0
        stored = await asyncio.to_thread(self.store.versions, names)
        for name in set(names) - set(stored):
            if await asyncio.to_thread(self._purged, name):  # by another worker, before this one saw the delete
                self._forget(name)
        moved = [
            name
            for name, version in stored.items()
            if name in self.experiments and version > self.experiments[name].bandit.version
        ]
        for name in moved:
            await self.reload(name)
            if self.experiments[name].candidate is not None:  # its learners learned its rewards: compare now
                await self._checked_candidate(name)
        return len(moved)

    async def discover(self) -> list[str]:
        """Serve the experiments other processes created; their names."""
        names = await asyncio.to_thread(self.store.experiment_names)
        new = sorted(names - set(self.experiments))
        for name in new:
            await self.reload(name)
        return new

    async def reload(self, name: str) -> None:
        """Serve ``name`` as stored now (if the store has a newer version than the one served).

        Read and built in a worker thread: a linear model of megabytes takes milliseconds to build, which the
        event loop spends serving (numpy releases the interpreter lock for most of it).
        """
        record, built = await asyncio.to_thread(self._load, name)
        if record is None or status_of(record.config) == DELETED:  # deleted or purged by another worker
            self._forget(name)
            return
        if built is not None:
            served = self.experiments.setdefault(name, built)
            if served is not built:  # created or discovered meanwhile
                served.adopt(record)

    def _load(self, name: str) -> tuple[ExperimentRecord | None, Experiment | None]:
        """In a worker thread: the stored record, adopted by the served experiment, or built if none is served."""
        record = self.store.load_experiment(name)
        served = self.experiments.get(name)
        if record is None or status_of(record.config) == DELETED:
            return record, None
        if served is not None:
            served.adopt(record)
            return record, None
        return record, restore(record, self.refresh_s, self._executor)

    def _purged(self, name: str) -> bool:
        """Whether a served experiment missing from the store was purged (its audit log ends with the purge).

        A store that lost its data (a Redis restarted without persistence) has no events either: the experiment
        is served on from memory and written again, as before the loss.
        """
        events = self.store.events(name)
        return bool(events) and events[-1].get("kind") == "purge"

    def _forget(self, name: str) -> None:
        """Stop serving ``name`` (deleted or purged): no decision, reward or default reward reaches it any more."""
        self.experiments.pop(name, None)
        self.supervisor_alerts.pop(name, None)

    def _adopt(self, record: ExperimentRecord) -> Experiment:
        experiment = self.experiments.get(record.name)
        if experiment is None:
            experiment = self.experiments.setdefault(record.name, restore(record, self.refresh_s, self._executor))
        else:
            experiment.adopt(record)
        return experiment

    # ---- catalogue ---------------------------------------------------------
    async def create(self, spec: ExperimentCreate) -> ExperimentOut:
        bandit = build_bandit(spec)
        refusal = unservable_reason(self.store, bandit.policy)
        if refusal is not None:
            raise InvalidRequestError(refusal, "policy")
        model, arrays = split(bandit)
        now = time.time()
        # The configuration keeps what the request asked for, not the trained model it started from (the state).
        config = spec.model_dump(mode="json", exclude={"model"})
        record = ExperimentRecord(spec.name, config, model, arrays, bandit.version, now, now)
        event = {"kind": "create", "warm_start": spec.model is not None}
        try:
            await settled(self.store.create_experiment(record, event))
        except ExperimentExistsError:
            if spec.name in await asyncio.to_thread(self.store.deleted_names):
                raise DeletedNameError(
                    f"experiment {spec.name!r} was deleted and its log is kept: the name is free once the log is "
                    f"purged (DELETE /v1/experiments/{spec.name}/log)"
                ) from None
            if not self.store.learns_in_process:  # created by another worker: serve it from now on
                await self.reload(spec.name)
            raise
        experiment = restore(record, self.refresh_s, self._executor)
        self.experiments[spec.name] = experiment
        return experiment.describe()

    async def change_arms(self, name: str, patch: ArmsPatch) -> ExperimentOut:
        experiment = self.experiment(name)
        if experiment.candidate is not None:
            raise ConflictError(
                f"experiment {name!r} serves candidate {experiment.candidate.id!r}, which has the same arms: promote "
                "or delete it before changing arms"
            )
        if patch.add:  # checked before the arrays are made: too many arms of a large model would not fit in memory
            served = experiment.bandit
            size = state_bytes(served.policy, len(served.arms) + len(patch.add), served.n_features)
            if size > MAX_STATE_BYTES:
                raise InvalidRequestError(
                    f"adding {len(patch.add)} arms would make the state of experiment {name!r} take "
                    f"{size / 1e6:.1f} MB, and the service serves at most {MAX_STATE_BYTES / 1e6:.1f} MB per "
                    f"experiment (at most {LARGEST_LINEAR})",
                    "add",
                )

        def change(current: Bandit) -> tuple[ModelChange, Bandit]:
            bandit = join(*split(current), current.version, current.rng)
            for field_name, operation in (
                ("add", bandit.add_arm),
                ("enable", bandit.enable_arm),
                ("disable", bandit.disable_arm),
                ("remove", bandit.remove_arm),
            ):
                for arm in getattr(patch, field_name):
                    try:
                        operation(arm)
                    except BanditkitError as error:
                        raise InvalidRequestError(f"{field_name} {arm!r}: {error}", field_name) from None
            if len(bandit.arms) > MAX_ARMS:
                raise InvalidRequestError(
                    f"an experiment holds at most {MAX_ARMS} arms; this change would leave {len(bandit.arms)}", "add"
                )
            # One change, one version, however many arms it touched.
            model, arrays = split(bandit)
            version = current.version + 1
            event = {"kind": "arms", **patch.model_dump()}
            return ModelChange(model, arrays, version, current.version, event), join(model, arrays, version, bandit.rng)

        await self._change_model(experiment, change)
        return experiment.describe()

    async def patch(self, name: str, patch: ExperimentPatch) -> ExperimentOut:
        """Edit a served experiment's guardrails, window, default reward, policy parameters or supervisor.

        One new policy version, whose event lists the changes; the learned state is kept.
        """
        experiment = self.experiment(name)
        changes = patch.model_dump(mode="json", exclude_unset=True)
        if not changes:
            raise InvalidRequestError(f"give at least one of {', '.join(ExperimentPatch.model_fields)}")
        if "attribution_window_s" in changes and changes["attribution_window_s"] is None:
            raise InvalidRequestError("attribution_window_s must be a number of seconds", "attribution_window_s")
        current = experiment.config
        config = current.model_dump(mode="json", exclude={"model"})
        for key in ("guardrails", "attribution_window_s", "default_reward", "source"):
            if key in changes:
                config[key] = changes[key]
        if "supervisor" in changes:
            config["supervisor"] = changes["supervisor"] or SupervisorSpec().model_dump(mode="json")
        if changes.get("policy_params"):
            config["policy"] = {
                "name": current.policy.name,
                "params": {**current.policy.params, **changes["policy_params"]},
            }
        spec = ExperimentCreate.model_validate(config)
        try:
            policy, guardrails = checked_configuration(spec)
        except InvalidRequestError as error:
            if error.field == "policy":
                error.field = "policy_params"
            raise
        refusal = unservable_reason(self.store, policy)
        if refusal is not None:
            raise InvalidRequestError(refusal, "policy_params")

        def change(served: Bandit) -> tuple[ModelChange, Bandit]:
            model, arrays = split(served)
            try:  # the learned state must fit the new parameters: it is kept
                policy.check_state(policy_state(arrays), len(served.arms), served.n_features)
            except BanditkitError as error:
                raise InvalidRequestError(
                    f"policy_params: the learned state does not fit them ({error}); create a new experiment instead",
                    "policy_params",
                ) from None
            model = {**model, "policy": policy.to_dict(), "guardrails": asdict(guardrails)}
            version = served.version + 1
            event = {"kind": "patch", **changes}
            stored = with_status(config, experiment.status)  # as reloaded: an archived experiment stays archived
            return (
                ModelChange(model, arrays, version, served.version, event, config=stored),
                join(model, arrays, version, served.rng),
            )

        await self._change_model(experiment, change)
        experiment.config = spec
        return experiment.describe()

    # ---- lifecycle ---------------------------------------------------------
    async def archive(self, name: str) -> ExperimentOut:
        """Stop serving decisions of ``name`` (409 for each); rewards of its decisions still join and are learned.

        Idempotent: an archived experiment stays as it is, nothing written.
        """
        return await self._set_status(name, ARCHIVED)

    async def unarchive(self, name: str) -> ExperimentOut:
        """Serve an archived experiment again, as it learned meanwhile (idempotent for an active one)."""
        return await self._set_status(name, ACTIVE)

    async def delete(self, name: str) -> None:
        """Take ``name`` out of serving and of the catalogue; its log stays readable until :meth:`purge`.

        Rewards for its decisions are refused from now on (404), and no default reward is applied: archive it
        first and let its attribution window close to keep them.
        """
        await self._set_status(name, DELETED)
        self._forget(name)

    async def purge(self, name: str) -> PurgeOut:
        """Remove a deleted experiment's log and everything else stored of it, and say how much went.

        404 for a name the store does not hold, 409 for an experiment not deleted (delete it first). The audit
        events stay, with a ``purge`` event; the name is free afterwards. The Parquet partitions the Redis
        learner archived for it under :attr:`archive_dir` go too, so a new experiment of that name starts
        with an empty log.
        """
        if name not in await asyncio.to_thread(self.store.deleted_names):
            self.experiment(name)  # 404 when unknown
            raise ConflictError(
                f"experiment {name!r} is not deleted: only a deleted experiment's log is purged "
                f"(DELETE /v1/experiments/{name} first)"
            )
        decisions, rewards = await settled(self.store.purge_experiment(name, {"kind": "purge"}))
        self._forget(name)
        files = 0 if self.archive_dir is None else await asyncio.to_thread(remove_archived, self.archive_dir, name)
        return PurgeOut(experiment=name, decisions=decisions, rewards=rewards, archived_files=files)

    def describe_deleted(self, names: list[str]) -> list[ExperimentOut]:
        """How each deleted experiment of ``names`` was when deleted (built from the store: call off the loop)."""
        records = [self.store.load_experiment(name) for name in names]
        return [
            restore(record, 0.0, None).describe()
            for record in records
            if record is not None and status_of(record.config) == DELETED
        ]

    async def _set_status(self, name: str, status: str) -> ExperimentOut:
        """Store ``status`` in the experiment's configuration: one more version and an event named after it."""
        experiment = self.experiment(name)
        kind = {ACTIVE: "unarchive", ARCHIVED: "archive", DELETED: "delete"}[status]

        def change(current: Bandit) -> tuple[ModelChange, Bandit] | None:
            if experiment.status == status:
                return None
            config = with_status(experiment.config.model_dump(mode="json", exclude={"model"}), status)
            model, arrays = split(current)
            version = current.version + 1
            event = {"kind": kind, "from": experiment.status}
            return (
                ModelChange(model, arrays, version, current.version, event, config=config),
                join(model, arrays, version, current.rng),
            )

        if await self._change_model(experiment, change) is not None:
            experiment.status = status
        return experiment.describe()

    async def snapshot(self, name: str) -> SnapshotOut:
        experiment = self.experiment(name)
        if not self.store.learns_in_process:  # keep the stored model, not the one polled up to model_poll_s ago
            await self.reload(name)
        with experiment.lock:
            bandit = experiment.bandit
            model, arrays = split(bandit)
        created_at = time.time()  # one time, stored and answered
        snapshot_id = await settled(self.store.save_snapshot(name, model, arrays, bandit.version, created_at))
        return SnapshotOut(snapshot_id=snapshot_id, policy_version=bandit.version, created_at=created_at)

    def snapshots(self, name: str) -> list[SnapshotOut]:
        self.experiment(name)
        return [
            SnapshotOut(snapshot_id=s.snapshot_id, policy_version=s.policy_version, created_at=s.created_at)
            for s in self.store.list_snapshots(name)
        ]

    async def rollback(self, name: str, snapshot_id: int) -> ExperimentOut:
        experiment = self.experiment(name)
        snapshot = self.store.get_snapshot(name, snapshot_id)
        if snapshot is None:
            raise NotFoundError(f"snapshot {snapshot_id} of experiment {name!r} not found")

        def change(current: Bandit) -> tuple[ModelChange, Bandit]:
            version = current.version + 1
            event = {"kind": "rollback", "snapshot_id": snapshot_id, "restored_version": snapshot.policy_version}
            if experiment.candidate is not None:  # compared with the policy it was registered beside: removed
                event["candidate_removed"] = experiment.candidate.id
            # A snapshot keeps the experiment's Bandit only: no candidate, and the lineage as it is now.
            model = {
                **candidates.bandit_model(snapshot.model),
                "candidate": None,
                "lineage": experiment.lineage or None,
            }
            return (
                ModelChange(model, snapshot.state, version, current.version, event),
                join(snapshot.model, snapshot.state, version, current.rng),
            )

        await self._change_model(experiment, change)
        return experiment.describe()

    # ---- policy canaries ---------------------------------------------------------------------
    async def register_candidate(self, name: str, body: CandidateCreate) -> CandidateOut:
        """Serve a candidate policy to ``body.share`` of the units: one model change, a new version, an event.

        409 when the experiment has a candidate already or is sticky; 422 naming ``policy`` when the candidate
        policy does not fit the experiment (its rewards, contexts, or the store).
        """
        experiment = self.experiment(name)
        if experiment.config.sticky:
            raise ConflictError(
                f"experiment {name!r} is sticky: each unit keeps its first arm, so a candidate would not choose its "
                "arms; canaries need an experiment that is not sticky"
            )
        requested = body.model_dump(mode="json")
        candidates.check_policy(experiment.bandit, requested["policy"])
        spec = candidates.spec_of(requested, experiment.bandit.guardrails)
        policy = make_policy(spec["policy"])
        refusal = unservable_reason(self.store, policy)
        if refusal is not None:
            raise InvalidRequestError(refusal, "policy")
        if experiment.candidate is not None:
            raise ConflictError(
                f"experiment {name!r} has candidate {experiment.candidate.id!r} already: promote or delete it first"
            )

        def change(current: Bandit) -> tuple[ModelChange, Bandit]:
            model, arrays = _stored(experiment, current)
            built = candidates.registration(current, model, arrays, spec)
            return built, _at_version(built, current.rng)

        await self._change_model(experiment, change)
        return self.candidate(name)

    def candidate(self, name: str) -> CandidateOut:
        """The candidate of ``name`` with its share and the comparison; 404 when it has none."""
        experiment = self.experiment(name)
        with experiment.lock:
            candidate = experiment.candidate
            if candidate is None:
                raise NotFoundError(f"experiment {name!r} has no candidate")
            return CandidateOut.model_validate(candidates.describe(experiment.bandit, candidate))

    async def remove_candidate(
        self, name: str, kind: str = "candidate_removed", figures: dict | None = None, only: str | None = None
    ) -> ModelChange | None:
        """Stop serving the candidate (``kind``: removed by an admin, or rolled back); the change written.

        ``only``: remove it only if it is still this candidate (a rollback decided on figures of that one);
        None is returned when it is not.
        """
        experiment = self.experiment(name)
        if experiment.candidate is None:
            raise NotFoundError(f"experiment {name!r} has no candidate")

        def change(current: Bandit) -> tuple[ModelChange, Bandit] | None:
            if only is not None and (experiment.candidate is None or experiment.candidate.id != only):
                return None
            model, arrays = _stored(experiment, current)
            built = candidates.removal(current, model, arrays, kind, figures)
            return built, _at_version(built, current.rng)

        return await self._change_model(experiment, change)

    async def promote_candidate(self, name: str) -> ExperimentOut:
        """Make the candidate the experiment's policy, with what it learned: a new policy version and an event."""
        experiment = self.experiment(name)
        if experiment.candidate is None:
            raise NotFoundError(f"experiment {name!r} has no candidate to promote")

        def change(current: Bandit) -> tuple[ModelChange, Bandit]:
            candidate = experiment.candidate
            if candidate is None:  # removed by a rollback while this waited for its turn
                raise NotFoundError(f"experiment {name!r} has no candidate to promote")
            model, arrays = _stored(experiment, current)
            figures = {"comparison": candidates.comparison(current, candidate)}
            config = with_status(experiment.config.model_dump(mode="json", exclude={"model"}), experiment.status)
            config["policy"] = candidate.spec["policy"]
            built = candidates.promotion(current, model, arrays, figures, config)
            return built, _at_version(built, current.rng)

        written = await self._change_model(experiment, change)
        assert written is not None and written.config is not None  # a promotion always writes, with its config
        experiment.config = creation_spec(written.config)
        return experiment.describe()

    async def check_candidate(self, name: str) -> dict | None:
        """Roll the candidate of ``name`` back if it is credibly worse or below its floor; the event written, if any.

        Called after rewards are learned (and by the supervisor loop for a shared store, whose learners learn
        them). Costs a few arithmetic operations while the candidate is waiting for rewards.
        """
        experiment = self.experiments.get(name)
        if experiment is None or experiment.candidate is None:
            return None
        with experiment.lock:
            candidate = experiment.candidate
            if candidate is None or not candidates.enough(experiment.bandit, candidate):
                return None
            figures = candidates.comparison(experiment.bandit, candidate)
        if figures["verdict"] not in ("worse", "guardrail"):
            return None
        reason = "credibly_worse" if figures["verdict"] == "worse" else "guardrail"
        try:
            written = await self.remove_candidate(
                name, "candidate_rolled_back", {"reason": reason, "comparison": figures}, only=candidate.id
            )
        except NotFoundError:
            return None
        if written is None:
            return None
        logger.warning("experiment %r: candidate %r rolled back (%s)", name, candidate.id, reason)
        if self.metrics is not None:
            self.metrics.candidate_event(name, "candidate_rolled_back", reason)
        return written.event

    async def record_alert(self, name: str, alert: AlertRequest) -> AlertOut:
        """Write an alert raised or resolved as an event, with its configured remediation, exactly once.

        Built as any model change, on the stored version, and written by compare-and-set: when several
        processes raise the same alert, the first one writes it (and its remediation, e.g. an arm disabled;
        the version goes up by one), the others rebuild on the new version, find it open and write nothing.
        Whether it is open is read from the stored events (off the event loop) before each attempt, so this
        holds across restarts too.
        """
        experiment = self.experiment(name)
        if alert.arm is not None and alert.arm not in experiment.bandit.arms:
            raise InvalidRequestError(f"arm {alert.arm!r} is not one of {experiment.bandit.arms}", "arm")
        action = experiment.config.supervisor.remediation.get(alert.kind, "alert_only")
        opened: dict = {}

        async def read_events() -> None:
            opened.clear()
            opened.update(open_alerts(await asyncio.to_thread(self.store.events, name)))

        def change(current: Bandit) -> tuple[ModelChange, Bandit] | None:
            if ((alert.kind, alert.arm) in opened) == (alert.state == "open"):
                return None
            bandit = join(*split(current), current.version, current.rng)
            disabled = remediate(bandit, alert, action) if alert.state == "open" else []
            event = {"kind": "alert", "alert": alert.kind, **alert.model_dump(exclude={"kind"})}
            if alert.state == "open":
                event.update(remediation=action, disabled=disabled)
            model, arrays = split(bandit)
            version = current.version + 1
            return ModelChange(model, arrays, version, current.version, event), join(model, arrays, version, bandit.rng)

        written = await self._change_model(experiment, change, before=read_events)
        if written is None:
            return AlertOut(written=False)
        event = {"experiment": name, "time": time.time(), "policy_version": written.version, **written.event}
        if self.metrics is not None:
            self.metrics.alerted(name, alert.kind, alert.state)
        if self.on_alert is not None:
            self.on_alert(name, event)
        return AlertOut(written=True, event=event)

    async def _change_model(
        self,
        experiment: Experiment,
        change: Callable[[Bandit], tuple[ModelChange, Bandit | None] | None],
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> ModelChange | None:
        """Store the model change that ``change`` builds from the served Bandit, then serve the Bandit it returns.

        When it returns None as the Bandit, the served Bandit stays, its distributions recomputed; when it
        returns None alone, there is nothing to write. Returns the change written. ``before`` is awaited
        before each attempt, once the model is reloaded: what ``change`` reads from the store besides it.

        Rewards wait while the change is written (:meth:`Experiment.model_written`). The store refuses a
        change built on an older version than its own (:class:`ModelMovedError`): rewards submitted before
        it committed first, or, with a shared store, a learner moved the model; the change is built again
        from the model as it is then (reloaded first from a shared store).
        """
        async with experiment.model_change:
            for attempt in range(_MODEL_CHANGE_ATTEMPTS):
                if not self.store.learns_in_process:
                    await self.reload(experiment.name)
                    if self.experiments.get(experiment.name) is not experiment:  # another worker deleted it
                        raise NotFoundError(f"experiment {experiment.name!r} not found")
                if before is not None:
                    await before()
                with experiment.lock:
                    planned = change(experiment.bandit)
                    if planned is not None:  # the candidate and lineage stay unless the change sets them
                        planned = (_carried(experiment, planned[0]), planned[1])
                if planned is None:
                    return None
                built, bandit = planned
                try:
                    await settled(self.store.replace_model(experiment.name, built))
                except ModelMovedError:
                    if attempt == _MODEL_CHANGE_ATTEMPTS - 1:
                        raise
                    continue
                candidate = candidates.load(
                    built.model, built.state, built.version, experiment.bandit.rng, experiment.cache.sibling()
                )
                with experiment.lock:
                    if bandit is not None:
                        experiment.bandit = bandit
                    experiment.candidate, experiment.lineage = candidate, dict(built.model.get("lineage") or {})
                    experiment.cache.clear()
                return built
        return None  # not reached: the last attempt raises

    def model_json(self, name: str) -> tuple[int, bytes]:
        """The served model of ``name`` as JSON bytes of :class:`~.schemas.ModelOut`, and its version.

        Taken under the experiment's lock, so a reward never lands half-way; for a state of megabytes this
        takes milliseconds, so call it off the event loop.
        """
        experiment = self.experiment(name)
        with experiment.lock:
            bandit = experiment.bandit
            data = bandit.to_dict()
        body = {"experiment": name, "version": bandit.version, "model": data}
        return bandit.version, json.dumps(body, allow_nan=False, separators=(",", ":")).encode()

    def stats(self, name: str) -> StatsOut:
        experiment = self.experiment(name)
        view = experiment.cache.view(experiment.bandit)
        rows = view.stats()
        known = [row.probability for row in rows if row.probability is not None]
        positive = np.array([p for p in known if p > 0])
        entropy = float(-(positive * np.log(positive)).sum()) if known else None
        alerts = [f"arm {row.arm!r} disabled: {row.disabled_reason}" for row in rows if row.disabled_reason]
        if view.aborted:
            alerts.append("abort rule fired: serving the default arm until resumed")
        alerts.extend(self.supervisor_alerts.get(name, ()))
        decisions, rewards = self.store.counts(name)
        loop = self.store.learning_loop([name]).get(name)  # a shared store's: what its learners have not learned
        return StatsOut(
            experiment=name,
            policy_version=view.version,
            decisions=decisions,
            rewards=rewards,
            entropy=entropy,
            regret_estimate=rows.regret_estimate,
            regret_low=rows.regret_low,
            regret_high=rows.regret_high,
            learner_lag_s=loop.unlearned_age_s if loop is not None else 0.0,
            arms=[
                ArmStatsOut(
                    arm=row.arm,
                    pulls=row.pulls,
                    mean=row.mean,
                    low=row.low,
                    high=row.high,
                    cs_low=row.cs_low,
                    cs_high=row.cs_high,
                    p_best=row.p_best,
                    p_beats_default=row.p_beats_default,
                    probability=row.probability,
                    active=row.active,
                    disabled_reason=row.disabled_reason,
                )
                for row in rows
            ],
            alerts=alerts,
            source=None if self.source_status is None else self.source_status(name),
        )

    # ---- decisions ---------------------------------------------------------
    async def decide_one(self, name: str, request: DecisionRequest) -> DecisionResponse:
        """One decision, chosen, logged and answered with the other single decisions of this loop turn."""
        experiment = self.experiment(name)
        _check_serving(experiment)
        _check_request(experiment, request, "")
        if request.request_id is not None:
            return (await self._deduplicated(name, [request], ""))[0]
        return await self._single_decisions.submit(name, request)

    async def decide(self, name: str, requests: list[DecisionRequest], field: str = "") -> list[DecisionResponse]:
        """Serve, log durably, then answer; the default arm (flagged) when the policy or the store fails."""
        experiment = self.experiment(name)
        _check_serving(experiment)
        for row, request in enumerate(requests):
            _check_request(experiment, request, f"{field}{row}." if field else "")
        if any(request.request_id is not None for request in requests):
            return await self._deduplicated(name, requests, field)
        return await self._serve(name, requests)

    async def _deduplicated(self, name: str, requests: list[DecisionRequest], field: str) -> list[DecisionResponse]:
        """:meth:`_serve` for requests of which some carry a ``request_id``: each is logged once.

        Those already logged are answered from the log (409 if their body differs), the others are served
        once under their derived decision id.
        """
        ids: list[str | None] = [
            None if r.request_id is None else request_decision_id(name, r.request_id) for r in requests
        ]
        answers: list[DecisionResponse | None] = [None] * len(requests)
        for waited in {i for i in ids if i is not None and i in self._pending_ids}:
            await asyncio.shield(self._pending_ids[waited])  # a retry of a request being served here: the first's
        logged = await asyncio.to_thread(self.store.find_decisions, [i for i in dict.fromkeys(ids) if i is not None])
        first: dict[str | None, int] = {}  # id -> the row that serves it
        for row, (request, key) in enumerate(zip(requests, ids, strict=True)):
            if key is None:
                continue
            prefix = f"{field}{row}." if field else ""
            found = logged.get(key)
            if found is not None:
                _check_replay(found[0], request, prefix)
                answers[row] = _response(found[0])
            elif key in first:
                _check_replay_request(requests[first[key]], request, prefix)
            else:
                first[key] = row
        serve = [row for row, key in enumerate(ids) if answers[row] is None and (key is None or first[key] == row)]
        if serve:
            claimed = {key: asyncio.get_running_loop().create_future() for key in (ids[row] for row in serve) if key}
            self._pending_ids.update(claimed)
            try:
                served = await self._serve(name, [requests[row] for row in serve])
            finally:
                for key, future in claimed.items():
                    del self._pending_ids[key]
                    future.set_result(None)
            for row, answer in zip(serve, served, strict=True):
                answers[row] = answer
            for row, key in enumerate(ids):
                if answers[row] is None:
                    answers[row] = answers[first[key]]
        return answers  # type: ignore[return-value]  # every row is answered

    async def log_decisions(self, name: str, decisions: list[LoggedDecision]) -> tuple[int, int]:
        """Log decisions a client made itself; (written, already logged). Idempotent by decision id.

        Each is checked against the served experiment (arms, probabilities, context, version, time) and 422
        names the field at fault; one already logged with another arm, unit or time is a 409.
        """
        experiment = self.experiment(name)
        now = time.time()
        records = [_logged_record(experiment, d, f"decisions.{row}.", now) for row, d in enumerate(decisions)]
        unique = list({record.decision_id: record for record in records}.values())
        for decision_id in [r.decision_id for r in unique if r.decision_id in self._pending_ids]:
            await asyncio.shield(self._pending_ids[decision_id])
        logged = await asyncio.to_thread(self.store.find_decisions, [r.decision_id for r in unique])
        for row, record in enumerate(records):
            found = logged.get(record.decision_id)
            if found is not None and _logged_key(found[0]) != _logged_key(record):
                raise ConflictError(
                    f"decisions.{row}.decision_id {record.decision_id!r} is logged already with another arm, unit "
                    "or time"
                )
        fresh = [record for record in unique if record.decision_id not in logged]
        if fresh:
            claimed = {record.decision_id: asyncio.get_running_loop().create_future() for record in fresh}
            self._pending_ids.update(claimed)
            try:
                await settled(self.store.append_decisions(fresh))
            finally:
                for decision_id, future in claimed.items():
                    del self._pending_ids[decision_id]
                    future.set_result(None)
            self.recent.add(fresh)
            if self.metrics is not None:
                self.metrics.decided(name, fresh, {})
        return len(fresh), len(decisions) - len(fresh)

    async def _serve(self, name: str, requests: list[DecisionRequest]) -> list[DecisionResponse]:
        """:meth:`decide` for requests already checked."""
        experiment = self.experiment(name)
        metrics = self.metrics
        now = time.time()
        token = object()
        self._in_flight[token] = now
        try:
            records, assignments, policy_errors = self._choose(experiment, requests, now)
            started = time.perf_counter()
            try:
                await settled(self.store.append_decisions(records, assignments))
                self.recent.add(records)
                fallbacks = _fallback_reasons(experiment, records, policy_errors) if metrics is not None else {}
            except Exception as error:
                if isinstance(error, StoreUnavailableError):  # an outage (the store logs it once)
                    logger.debug("decision log unavailable for %r: serving the default arm", name)
                else:
                    logger.exception("decision log unavailable for %r: serving the default arm", name)
                # A write that failed may still have reached the store (Redis killed after it took the write, before
                # its answer): the fallbacks get new ids, so a row the store may hold never stands for an answer
                # that was not given.
                records = [_fallback(experiment, r.unit, r.context, now, new_decision_id()) for r in records]
                # Not logged either (a full disk; Redis down and its spool's disk full): the error answers
                # (503 for an outage), since a decision is never answered without being logged.
                await settled(self.store.append_decisions(records))
                fallbacks = {"store_unavailable": len(records)}
            if metrics is not None:
                metrics.store_latency("log_decisions", time.perf_counter() - started)
                metrics.decided(name, records, fallbacks)
        finally:
            del self._in_flight[token]
        return [_response(r) for r in records]

    def _choose(
        self, experiment: Experiment, requests: list[DecisionRequest], now: float
    ) -> tuple[list[DecisionRecord], dict[str, Assignment], int]:
        """A record per request, the sticky assignments to store, and how many fell back because the policy failed."""
        records: list[DecisionRecord | None] = [None] * len(requests)
        policy_errors = 0
        assignments: dict[str, Assignment] = {}
        sticky = experiment.config.sticky
        groups: dict[tuple[str, ...] | None, list[int]] = {}
        for row, request in enumerate(requests):
            if sticky and request.unit is not None:
                kept = self._kept(experiment, request, request.unit)
                if kept is not None:
                    records[row] = _record(
                        experiment,
                        request,
                        kept.arm,
                        kept.propensity,
                        kept.probabilities,
                        experiment.bandit.version,
                        False,
                        now,
                    )
                    continue
            key = None if request.allowed is None else tuple(sorted(set(request.allowed)))
            groups.setdefault(key, []).append(row)
        candidate = experiment.candidate
        # (served by the candidate, allowed arms) -> rows: each group in two while a candidate is served
        split = (
            {(False, key): rows for key, rows in groups.items()}
            if candidate is None
            else _split_groups(experiment.name, candidate, groups, requests, experiment.bandit.rng)
        )
        for (tried, allowed), rows in split.items():
            served = candidate.id if tried and candidate is not None else CURRENT_POLICY
            try:
                if not tried:
                    chosen = self._draw(experiment, allowed, [requests[row] for row in rows])
                else:
                    assert candidate is not None  # keyed so only while one is served
                    chosen = self._draw(
                        experiment, allowed, [requests[row] for row in rows], candidate.bandit, candidate.cache
                    )
            except Exception:
                logger.exception("policy failed for %r: serving the default arm", experiment.name)
                chosen = None
                policy_errors += len(rows)
            for position, row in enumerate(rows):
                request = requests[row]
                if chosen is None:
                    decision_id = _new_id(experiment, request)
                    records[row] = _fallback(experiment, request.unit, request.context, now, decision_id)
                    continue
                arm, propensity, probabilities, version, fallback = chosen[position]
                records[row] = _record(
                    experiment, request, arm, propensity, probabilities, version, fallback, now, served
                )
                if sticky and request.unit is not None and not fallback:
                    assignments[request.unit] = Assignment(arm, propensity, probabilities)
        return records, assignments, policy_errors  # type: ignore[return-value]  # every row is kept, drawn or a fallback

    def _kept(self, experiment: Experiment, request: DecisionRequest, unit: str) -> Assignment | None:
        """The unit's stored arm if it may still be served to this request."""
        kept = self.store.get_assignment(experiment.name, unit)
        if kept is None or kept.arm not in experiment.bandit.active_arms:
            return None
        if request.allowed is not None and kept.arm not in request.allowed:
            return None
        return kept

    def _draw(
        self,
        experiment: Experiment,
        allowed,
        requests: list[DecisionRequest],
        policy: Bandit | None = None,
        cache: DistributionCache | None = None,
    ) -> list[tuple]:
        """(arm, propensity, probabilities, version, fallback) per request sharing ``allowed``.

        Drawn from the experiment's Bandit, or from ``policy`` (its candidate's) with that one's ``cache``.
        """
        bandit = experiment.bandit if policy is None else policy
        cache = experiment.cache if cache is None else cache
        counted = policy is None and self.metrics is not None
        units = [request.unit for request in requests]
        if not bandit.policy.contextual:
            entry = cache.get(bandit, allowed)
            indices = draw(entry, experiment.name, units, bandit.rng)
            if allowed is None and counted and self.metrics is not None:
                self.metrics.serving(experiment.name, entry.arms, entry.probabilities)
            return [
                (entry.arms[i], float(entry.probabilities[i]), entry.as_dict, entry.version, entry.fallback)
                for i in indices
            ]
        view = cache.view(bandit)
        contexts = np.array([request.context for request in requests], dtype=np.float64)
        matrix = contextual_probabilities(view, contexts, allowed)
        fallback = view.aborted or not (set(view.active_arms) & set(allowed or view.arms))
        drawn = assign_rows(matrix, experiment.name, units, view.rng)
        arms = view.arms
        if allowed is None and counted and self.metrics is not None:
            self.metrics.serving(experiment.name, tuple(arms), matrix.mean(axis=0))
        return [
            (arms[i], float(matrix[row, i]), dict(zip(arms, matrix[row].tolist(), strict=True)), view.version, fallback)
            for row, i in enumerate(drawn.tolist())
        ]

    # ---- rewards -----------------------------------------------------------
    async def reward(self, name: str, items: list[RewardRequest]) -> list[RewardResult]:
        experiment = self.experiment(name)
        results = await rewarding.record(
            self.store, experiment, items, self._persist_guardrails, self.recent, self.metrics
        )
        if experiment.candidate is not None and self.store.learns_in_process:
            await self._checked_candidate(name)
        return results

    async def _checked_candidate(self, name: str) -> None:
        """:meth:`check_candidate`, logging a failure (the rewards were recorded and are answered either way)."""
        try:
            await self.check_candidate(name)
        except Exception as error:
            logger.error("candidate check of %r failed: %s", name, error)

    async def reward_one(self, name: str, item: RewardRequest) -> RewardResult:
        """One reward, recorded and learned with the other single rewards of this loop turn."""
        self.experiment(name)
        return await self._single_rewards.submit(name, item)

    async def sweep(self, now: float | None = None) -> int:
        """Apply default rewards to decisions whose window closed; returns how many."""
        total = 0
        for experiment in list(self.experiments.values()):
            # Decisions still being written are not visible yet: settle only what is older than all of them.
            horizon = min(self._in_flight.values(), default=float("inf"))
            applied = await rewarding.sweep(
                self.store, experiment, now or time.time(), horizon, self._persist_guardrails
            )
            if self.metrics is not None:
                self.metrics.defaulted(experiment.name, applied)
            if applied and experiment.candidate is not None:
                await self._checked_candidate(experiment.name)
            total += applied
        return total

    def _persist_guardrails(self, experiment: Experiment) -> None:
        """Store a guardrail's change of the model (an arm disabled by its SLO, an abort) as an event.

        It is queued at once behind the rewards that caused it (which do not wait for it); if rewards
        committed before it moved the version, it is built again and retried. A failure is logged.
        """
        first = self.store.replace_model(experiment.name, _carried(experiment, _guardrail_change(experiment.bandit)[0]))
        task = asyncio.ensure_future(self._guardrails_written(experiment, first))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _guardrails_written(self, experiment: Experiment, first) -> None:
        try:
            try:
                await settled(first)
            except ModelMovedError:
                await self._change_model(experiment, _guardrail_change)
        except Exception as error:
            logger.error("guardrail change of %r not stored: %s", experiment.name, error)
            return
        experiment.cache.clear()
        if experiment.candidate is not None:  # it serves the arms the experiment's policy serves
            with experiment.lock:
                model, arrays = _stored(experiment, experiment.bandit)
                version, rng = experiment.bandit.version, experiment.bandit.rng
            candidate = candidates.load(model, arrays, version, rng, experiment.cache.sibling())
            with experiment.lock:
                if (
                    experiment.candidate is not None
                    and candidate is not None
                    and experiment.candidate.id == candidate.id
                ):
                    experiment.candidate = candidate


def _stored(experiment: Experiment, current: Bandit) -> tuple[dict, dict]:
    """The experiment's model and arrays as stored: ``current``'s, with the candidate's and the lineage."""
    model, arrays = split(current)
    candidate = experiment.candidate
    model = {**model, "candidate": None if candidate is None else candidate.spec, "lineage": experiment.lineage or None}
    if candidate is not None:
        own = split(candidate.bandit)[1]
        arrays.update((CANDIDATE_PREFIX + key, value) for key, value in own.items())
    return model, arrays


def _at_version(change: ModelChange, rng: np.random.Generator) -> Bandit:
    """The experiment's Bandit as ``change`` stores it, drawing from ``rng`` (the served one's stream)."""
    return join(change.model, change.state, change.version, rng)


def _carried(experiment: Experiment, change: ModelChange) -> ModelChange:
    """``change`` keeping the experiment's candidate and lineage (:func:`.candidates.carried`)."""
    candidate = experiment.candidate
    if candidate is None and not experiment.lineage:
        return change
    model = {"candidate": None if candidate is None else candidate.spec, "lineage": experiment.lineage or None}
    arrays = {} if candidate is None else {CANDIDATE_PREFIX + k: v for k, v in split(candidate.bandit)[1].items()}
    return candidates.carried(change, model, arrays)


def _guardrail_change(current: Bandit) -> tuple[ModelChange, None]:
    """The model change that stores what guardrails changed in ``current`` (same version: no new state)."""
    model, arrays = split(current)
    event = {"kind": "guardrail", "disabled": dict(current.disabled_reasons), "aborted": current.aborted}
    return ModelChange(model, arrays, current.version, current.version, event), None


def _fallback_reasons(experiment: Experiment, records: list[DecisionRecord], policy_errors: int) -> dict[str, int]:
    """How many of the logged ``records`` served the default arm, by reason (the metrics' ``reason`` label).

    ``policy_errors`` of them because the policy raised; the others because the abort rule fired or no
    allowed arm was active.
    """
    flagged = int(records[0].fallback) if len(records) == 1 else sum(record.fallback for record in records)
    if not flagged:
        return {}
    guarded = flagged - policy_errors
    reasons = {"policy_error": policy_errors} if policy_errors else {}
    if guarded:
        reasons["aborted" if experiment.bandit.aborted else "no_active_arm"] = guarded
    return reasons


def _check_serving(experiment: Experiment) -> None:
    """409 when ``experiment`` is archived: it serves no decisions (client-made ones are still logged)."""
    if experiment.status == ARCHIVED:
        raise ConflictError(
            f"experiment {experiment.name!r} is archived: it serves no decisions (rewards for its decisions are "
            f"still recorded); POST /v1/experiments/{experiment.name}/unarchive serves it again"
        )


def _check_request(experiment: Experiment, request: DecisionRequest, prefix: str) -> None:
    bandit = experiment.bandit
    if bandit.policy.contextual:
        if request.context is None:
            raise InvalidRequestError(
                f"policy {bandit.policy.name!r} needs a context of {bandit.n_features} numbers", f"{prefix}context"
            )
        if len(request.context) != bandit.n_features:
            raise InvalidRequestError(
                f"context must have {bandit.n_features} numbers, got {len(request.context)}", f"{prefix}context"
            )
    elif request.context is not None:
        raise InvalidRequestError(f"policy {bandit.policy.name!r} takes no context, got one", f"{prefix}context")
    if request.allowed is not None:
        unknown = [arm for arm in request.allowed if arm not in bandit.arms]
        if unknown:
            raise InvalidRequestError(f"allowed arm {unknown[0]!r} is not one of {bandit.arms}", f"{prefix}allowed")


def _record(
    experiment: Experiment,
    request: DecisionRequest,
    arm: str,
    propensity: float,
    probabilities: dict[str, float],
    version: int,
    fallback: bool,
    now: float,
    policy: str = CURRENT_POLICY,
) -> DecisionRecord:
    context = None if request.context is None else tuple(request.context)
    return DecisionRecord(
        _new_id(experiment, request),
        now,
        experiment.name,
        request.unit,
        context,
        arm,
        propensity,
        probabilities,
        version,
        fallback,
        policy,
    )


def _split_groups(
    name: str,
    candidate: Candidate,
    groups: dict[tuple[str, ...] | None, list[int]],
    requests: list[DecisionRequest],
    rng: np.random.Generator,
) -> dict[tuple[bool, tuple[str, ...] | None], list[int]]:
    """``groups`` (allowed arms -> rows) keyed ``(served by the candidate, allowed arms)`` instead.

    The split is :func:`.candidates.split_units`: by the unit's salted hash, or a draw from ``rng``.
    """
    split: dict[tuple[bool, tuple[str, ...] | None], list[int]] = {}
    for key, rows in groups.items():
        chosen = candidates.split_units(name, candidate.share, [requests[row].unit for row in rows], rng)
        for tried in (False, True):
            part = [row for row, flag in zip(rows, chosen, strict=True) if flag == tried]
            if part:
                split[(tried, key)] = part
    return split


def _new_id(experiment: Experiment, request: DecisionRequest) -> str:
    """A fresh decision id, or the one derived from the request's ``request_id``."""
    if request.request_id is None:
        return new_decision_id()
    return request_decision_id(experiment.name, request.request_id)


def _response(record: DecisionRecord) -> DecisionResponse:
    return DecisionResponse(
        decision_id=record.decision_id,
        arm=record.arm,
        propensity=record.propensity,
        policy_version=record.policy_version,
        fallback=record.fallback,
        policy=record.policy,
    )


def _check_replay(record: DecisionRecord, request: DecisionRequest, prefix: str) -> None:
    """409 naming the field when a reused ``request_id`` comes with another body than the logged decision's.

    Unit and context are compared exactly (they are logged); ``allowed`` is not logged, so a body whose
    ``allowed`` excludes the logged arm is the conflict that can be seen.
    """
    context = None if request.context is None else tuple(request.context)
    differs = (
        "unit"
        if record.unit != request.unit
        else "context"
        if record.context != context
        else "allowed"
        if request.allowed is not None and not record.fallback and record.arm not in request.allowed
        else None
    )
    if differs is not None:
        raise ConflictError(
            f"{prefix}request_id {request.request_id!r} was used with another {differs}: a retry must repeat the "
            "first request's body"
        )


def _check_replay_request(first: DecisionRequest, request: DecisionRequest, prefix: str) -> None:
    """409 for a ``request_id`` given twice in one batch with different bodies."""
    for name in ("unit", "context", "allowed"):
        if getattr(first, name) != getattr(request, name):
            raise ConflictError(f"{prefix}request_id {request.request_id!r} was used with another {name} in this batch")


def _logged_key(record: DecisionRecord) -> tuple:
    """What makes two logs of one client-made decision the same decision."""
    return record.arm, record.unit, round(record.time, 3)


def _logged_record(experiment: Experiment, decision: LoggedDecision, prefix: str, now: float) -> DecisionRecord:
    """A client-made decision as a log row, or 422 naming the field that the served experiment contradicts."""
    bandit = experiment.bandit
    if decision.arm not in bandit.arms:
        raise InvalidRequestError(f"arm {decision.arm!r} is not one of {bandit.arms}", f"{prefix}arm")
    if sorted(decision.probabilities) != sorted(bandit.arms):
        raise InvalidRequestError(f"probabilities must name every arm of {bandit.arms}", f"{prefix}probabilities")
    values = np.fromiter(decision.probabilities.values(), dtype=np.float64)
    if np.any(values < 0) or abs(float(values.sum()) - 1.0) > 1e-6:
        raise InvalidRequestError("probabilities must be non-negative and sum to 1", f"{prefix}probabilities")
    if decision.probabilities[decision.arm] != decision.propensity:
        raise InvalidRequestError(
            f"propensity {decision.propensity} is not the arm's probability {decision.probabilities[decision.arm]}",
            f"{prefix}propensity",
        )
    if decision.policy_version > bandit.version:
        raise InvalidRequestError(
            f"policy_version {decision.policy_version} is newer than the served version {bandit.version}",
            f"{prefix}policy_version",
        )
    window = experiment.config.attribution_window_s
    if not now - window <= decision.time <= now + 60:
        raise InvalidRequestError(
            f"time {decision.time} is not within the attribution window ({window} s) before now, nor a minute "
            "ahead at most",
            f"{prefix}time",
        )
    if abs(int(decision.decision_id[:12], 16) / 1000 - decision.time) > 1.0:
        raise InvalidRequestError(
            "decision_id must start with the decision time in milliseconds (12 hex digits)", f"{prefix}decision_id"
        )
    request = DecisionRequest(unit=decision.unit, context=decision.context)
    _check_request(experiment, request, prefix)
    return DecisionRecord(
        decision.decision_id,
        decision.time,
        experiment.name,
        decision.unit,
        None if decision.context is None else tuple(decision.context),
        decision.arm,
        decision.propensity,
        {arm: decision.probabilities[arm] for arm in bandit.arms},
        decision.policy_version,
        decision.fallback,
    )


def _fallback(experiment: Experiment, unit: str | None, context, now: float, decision_id: str) -> DecisionRecord:
    arm = experiment.default_arm()
    probabilities = {name: float(name == arm) for name in experiment.bandit.arms}
    return DecisionRecord(
        decision_id,
        now,
        experiment.name,
        unit,
        None if context is None else tuple(context),
        arm,
        1.0,
        probabilities,
        experiment.bandit.version,
        True,
    )

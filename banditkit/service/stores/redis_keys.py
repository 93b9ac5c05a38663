"""What the Redis serving workers and the learner share: store URLs, key names, Lua scripts, row encodings.

Every key of one experiment carries the hash tag ``{experiment}``, so an
experiment lives in one Redis Cluster slot and its multi-key scripts and
MULTI blocks are atomic there. Layout, per experiment ``E`` under prefix ``P``:

- ``P:experiments`` SET of names (served, active or archived), ``P:deleted`` SET of the deleted ones whose log is
  kept until purged, and ``P:probe`` (never created, :func:`probe_writes`): the keys without a
  hash tag;
- ``P:{E}:meta`` HASH ``config``, ``created_at``, ``model``, ``state`` (:func:`pack_state`, binary),
  ``version``, ``reward_offset`` (last reward stream id in the model), ``archive_offset``;
- ``P:{E}:decisions`` STREAM, field ``row`` = :func:`decision_json`;
- ``P:{E}:pending`` HASH decision id -> :func:`pending_json` (what a reward join needs) plus the
  decision's stream id as its last element (read it with :func:`decision_from_pending`);
- ``P:{E}:due`` ZSET decision id by decision time (attribution windows not settled);
- ``P:{E}:rewards`` HASH decision id -> :func:`reward_json` (written only by :data:`CLAIM_REWARDS`);
- ``P:{E}:reward_stream`` STREAM, fields ``reward`` and ``decision`` (the pending row),
  consumer group :data:`LEARNERS`;
- ``P:{E}:snapshots`` HASH id -> JSON ``policy_version``, ``created_at``, ``model``;
  ``P:{E}:snapshot_states`` HASH id -> the snapshot's :func:`pack_state`;
- ``P:{E}:assignments``, ``snapshot_seq``, ``events``, ``counts``, ``lease``.

Clients are made with ``decode_responses=True``: every reply is ``str``, but for the commands that read a
packed state (:func:`read_meta`, :func:`read_snapshot_states`), whose replies stay ``bytes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..._codec import pack_arrays, unpack_arrays
from .base import (
    CURRENT_POLICY,
    Assignment,
    DecisionRecord,
    RewardRecord,
    State,
    decision_row,
    decode_state,
    reward_from_row,
    reward_row,
)

DEFAULT_PREFIX = "bk"
#: The consumer group of every reward stream.
LEARNERS = "learners"
#: :data:`APPLY_BATCH` answers: the caller no longer holds the lease / the model moved since it was read.
LEASE_LOST = -1
VERSION_MOVED = -2


class RedisURLError(ValueError):
    """A Redis store URL that is malformed, or names a server that does not answer."""


class RedisUnreachableError(RedisURLError):
    """A well-formed Redis store URL whose server does not answer (yet): worth retrying, unlike a malformed one."""


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A parsed store URL: ``redis://HOST:PORT/DB?prefix=P`` or ``redis+cluster://HOST:PORT?prefix=P``."""

    url: str
    cluster: bool
    host: str
    port: int
    db: int
    prefix: str


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "redis+cluster://"))


def parse_url(url: str) -> RedisURL:
    """The parts of a Redis store URL; :class:`RedisURLError` naming the URL and the part at fault."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "redis+cluster"):
        raise RedisURLError(f"store URL {url!r}: scheme must be redis:// or redis+cluster://")
    cluster = parts.scheme == "redis+cluster"
    try:
        port = parts.port or 6379
    except ValueError:
        raise RedisURLError(f"store URL {url!r}: the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise RedisURLError(f"store URL {url!r}: no host (expected {parts.scheme}://HOST:PORT)")
    path = parts.path.strip("/")
    if path and (cluster or not path.isdigit()):
        raise RedisURLError(
            f"store URL {url!r}: the path must be a database number"
            + (" and is not allowed for a cluster" if cluster else f", got {path!r}")
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"prefix"})
    if unknown:
        raise RedisURLError(f"store URL {url!r}: unknown option {unknown[0]!r} (only prefix=NAME)")
    prefix = query.get("prefix", [DEFAULT_PREFIX])[-1]
    if not prefix or any(c in prefix for c in "{} "):
        raise RedisURLError(f"store URL {url!r}: prefix must be non-empty, without braces or spaces, got {prefix!r}")
    return RedisURL(url, cluster, parts.hostname, port, int(path or 0), prefix)


def connect(url: str | RedisURL, *, timeout_s: float = 2.0):
    """A connected client (``redis.Redis`` or ``redis.cluster.RedisCluster``, str replies) and the location.

    Raises
    ------
    RedisURLError
        Naming the URL, when it is malformed; :class:`RedisUnreachableError` when the server does not answer a
        PING.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    location = url if isinstance(url, RedisURL) else parse_url(url)
    client: redis.Redis | RedisCluster
    try:
        if location.cluster:
            client = RedisCluster(
                host=location.host,
                port=location.port,
                decode_responses=True,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
            )
        else:
            # One immediate retry (a connection the server dropped), no backoff: an outage shows at once.
            client = redis.Redis(
                host=location.host,
                port=location.port,
                db=location.db,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
                decode_responses=True,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
            )
        client.ping()
    except (redis.RedisError, OSError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RedisUnreachableError(f"store URL {location.url!r}: Redis does not answer ({detail})") from None
    return client, location


def refusal(error: Exception) -> str | None:
    """The cause when Redis refuses a write because of its own condition, one that passes (retry), else None.

    ``MISCONF``: it cannot persist writes (its disk is full or failing); ``OOM``: its used memory is above
    ``maxmemory`` and its ``maxmemory-policy`` evicts nothing (more). Anything else is an error of the command.
    """
    from redis.exceptions import OutOfMemoryError  # redis-py is imported only when a Redis store is used

    message = str(error)
    if message.startswith("MISCONF"):
        return f"cannot persist writes ({message})"
    if isinstance(error, OutOfMemoryError):
        return "is out of memory (OOM: used memory > maxmemory, and maxmemory-policy evicts nothing more)"
    return None


def probe_writes(client, prefix: str) -> None:
    """A write that changes nothing and that Redis refuses like any other while it is out of memory.

    ``LPUSHX`` on :func:`probe_key`, which never exists: Redis refuses the command (``OOM``) before it runs
    while over ``maxmemory``, and otherwise it pushes nothing. PING answers then, so it cannot tell.
    """
    client.lpushx(probe_key(prefix), "")


# ---- keys ----------------------------------------------------------------------------------------
def experiments_key(prefix: str) -> str:
    return f"{prefix}:experiments"


def deleted_key(prefix: str) -> str:
    """The SET of deleted experiments whose keys are kept until purged (learners do not visit them)."""
    return f"{prefix}:deleted"


def probe_key(prefix: str) -> str:
    """The key of :func:`probe_writes`: never created."""
    return f"{prefix}:probe"


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one experiment (all in its hash slot)."""

    meta: str
    decisions: str
    pending: str
    due: str
    rewards: str
    reward_stream: str
    assignments: str
    snapshots: str
    snapshot_states: str
    snapshot_seq: str
    events: str
    counts: str
    lease: str

    @classmethod
    def of(cls, prefix: str, experiment: str) -> Keys:
        base = f"{prefix}:{{{experiment}}}:"
        return cls(*(base + name for name in cls.__slots__))

    def all(self) -> list[str]:
        return [getattr(self, name) for name in self.__slots__]


# ---- model state ----------------------------------------------------------------------------------
def pack_state(state: State) -> bytes:
    """The stored form of a policy state (meta's ``state``, a snapshot's): :func:`banditkit._codec.pack_arrays`.

    Binary, so that a serving worker following a model of megabytes decodes it in about a millisecond (one copy
    of the bytes) where JSON with base64 arrays took 45 ms for 11 MB, holding the interpreter lock.
    """
    return pack_arrays(state)


def unpack_state(blob: bytes) -> State:
    """Inverse of :func:`pack_state`; also reads the JSON text of :func:`~.base.encode_state` stored before.

    Stores written before the state was packed hold that text: their experiments load, and the next model
    written (a learner's update, an arm change) is packed.
    """
    if blob[:1] == b"{":
        return decode_state(blob.decode())
    return unpack_arrays(blob)


def read_meta(client, key: str) -> Any:
    """Send ``HGETALL`` of an experiment's meta hash, replied as ``bytes`` (parse it with :func:`parse_meta`).

    ``client`` is a client or a pipeline made with ``decode_responses=True``: only this reply stays binary.
    """
    return client.execute_command("HGETALL", key, **_binary())


def read_snapshot_states(client, key: str, ids: list) -> Any:
    """Send ``HMGET`` of snapshot states (:attr:`Keys.snapshot_states`), replied as ``bytes`` (or None each)."""
    return client.execute_command("HMGET", key, *ids, **_binary())


def _binary() -> dict[str, bool]:
    """The redis-py option that leaves one command's reply as ``bytes`` on a client that decodes the others."""
    from redis.client import NEVER_DECODE  # redis-py is imported only when a Redis store is used

    return {NEVER_DECODE: True}


@dataclass(frozen=True, slots=True)
class Meta:
    """An experiment's meta hash as :func:`read_meta` read it."""

    config: dict[str, Any]
    model: dict[str, Any]
    state: State = field(repr=False)
    version: int
    created_at: float
    reward_offset: str
    state_size: int  # bytes of the stored state


def parse_meta(meta: dict[bytes, bytes]) -> Meta:
    """The fields of a meta hash read by :func:`read_meta` (a non-empty one)."""
    blob = meta[b"state"]
    return Meta(
        json.loads(meta[b"config"]),
        json.loads(meta[b"model"]),
        unpack_state(blob),
        int(meta[b"version"]),
        float(meta[b"created_at"]),
        (meta.get(b"reward_offset") or b"0-0").decode(),
        len(blob),
    )


# ---- rows ----------------------------------------------------------------------------------------
def decision_json(record: DecisionRecord) -> str:
    """The decision stream's ``row`` field: :func:`~.base.decision_row` as a JSON list."""
    return json.dumps(decision_row(record))


def pending_json(record: DecisionRecord) -> str:
    """What a reward join needs: ``[time, arm, propensity, context|null, unit|null, policy_version, fallback, policy]``.

    :data:`LOG_DECISIONS` appends the decision's stream id; a row logged before decisions named their policy
    has seven values before it.
    """
    return json.dumps(
        [
            record.time,
            record.arm,
            record.propensity,
            None if record.context is None else list(record.context),
            record.unit,
            record.policy_version,
            int(record.fallback),
            record.policy,
        ]
    )


def decision_from_pending(decision_id: str, experiment: str, text: str) -> DecisionRecord:
    """The decision a pending row describes (its probabilities are not kept there: ``{}``)."""
    values = json.loads(text)
    t, arm, propensity, context, unit, version, fallback = values[:7]
    return DecisionRecord(
        decision_id,
        t,
        experiment,
        unit,
        None if context is None else tuple(context),
        arm,
        propensity,
        {},
        version,
        bool(fallback),
        pending_policy(values),
    )


def pending_policy(values: list) -> str:
    """The serving policy of a decoded pending row (with its stream id last): "current" for an older row."""
    return values[7] if len(values) > 8 else CURRENT_POLICY


def pending_stream_id(text: str) -> str:
    """The decision stream id that :data:`LOG_DECISIONS` appended to a pending row."""
    return json.loads(text)[-1]


def assignment_json(assignment: Assignment) -> str:
    return json.dumps([assignment.arm, assignment.propensity, assignment.probabilities])


def assignment_from_json(text: str) -> Assignment:
    arm, propensity, probabilities = json.loads(text)
    return Assignment(arm, propensity, probabilities)


def reward_json(record: RewardRecord) -> str:
    return json.dumps(reward_row(record))


def reward_from_json(text: str) -> RewardRecord:
    return reward_from_row(json.loads(text))


# ---- scripts ---------------------------------------------------------------------------------------
#: KEYS pending, rewards, reward_stream, counts, due, meta. ARGV now (float text), window_s, experiment,
#: then (decision_id, value as float text, source) per reward. Returns per reward a pair:
#: ("old", reward JSON) already rewarded, ("new", reward JSON) claimed now, ("missing", "") no pending
#: row, ("late", "") a client reward after the window. ``applied`` = the arm is in meta's model.
#: A claimed reward adds one to counts' ``rewards``, a default reward also to ``defaulted`` (a metric).
CLAIM_REWARDS = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local experiment = cjson.encode(ARGV[3])
local arms = nil
local out = {}
for i = 4, #ARGV, 3 do
  local id, value, source = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[2], id)
  if old then
    out[#out + 1] = 'old'; out[#out + 1] = old
  else
    local pending = redis.call('HGET', KEYS[1], id)
    if not pending then
      out[#out + 1] = 'missing'; out[#out + 1] = ''
    else
      local decision = cjson.decode(pending)
      if source == 'client' and now > decision[1] + window then
        out[#out + 1] = 'late'; out[#out + 1] = ''
      else
        if arms == nil then
          arms = {}
          local model = redis.call('HGET', KEYS[6], 'model')   -- gone if Redis lost its data: nothing applies
          if model then
            for _, arm in ipairs(cjson.decode(model).arms or {}) do arms[arm] = true end
          end
        end
        local applied = arms[decision[2]] and '1' or '0'
        local row = '[' .. cjson.encode(id) .. ',' .. experiment .. ',' .. cjson.encode(decision[2]) .. ',' ..
                    value .. ',' .. ARGV[1] .. ',' .. cjson.encode(source) .. ',' .. applied .. ']'
        redis.call('HSET', KEYS[2], id, row)
        redis.call('XADD', KEYS[3], '*', 'reward', row, 'decision', pending)
        redis.call('HINCRBY', KEYS[4], 'rewards', 1)
        if source == 'default' then redis.call('HINCRBY', KEYS[4], 'defaulted', 1) end
        redis.call('ZREM', KEYS[5], id)
        out[#out + 1] = 'new'; out[#out + 1] = row
      end
    end
  end
end
return out
"""

#: KEYS meta, reward_stream, lease. ARGV learner_id, expected_version, new model JSON ("" = unchanged),
#: new state (:func:`pack_state`, "" = unchanged), new reward_offset ("" = unchanged), then stream ids to XACK.
#: The version goes up by one when the model or the state changes (entries that were all learned before
#: are only acknowledged, and workers have nothing to reload). Returns the version, or :data:`LEASE_LOST` /
#: :data:`VERSION_MOVED` having written nothing.
APPLY_BATCH = (
    """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local version = tonumber(redis.call('HGET', KEYS[1], 'version'))
if version ~= tonumber(ARGV[2]) then return -2 end
if ARGV[3] ~= '' or ARGV[4] ~= '' then
  version = version + 1
  redis.call('HSET', KEYS[1], 'version', version)
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'model', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'reward_offset', ARGV[5]) end
for first = 6, #ARGV, 1000 do
  redis.call('XACK', KEYS[2], '"""
    + LEARNERS
    + """', unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return version
"""
)

#: KEYS lease. ARGV holder id, ttl in ms. Renews the lease if the caller holds it: 1, else 0.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

#: KEYS decisions, pending, due, counts, assignments. ARGV n, then n quadruples (decision_id, decision
#: JSON, pending JSON, time), then (unit, assignment JSON) pairs. Logs each decision unless its pending row
#: exists already (a spooled decision shipped before): serving workers log decisions, and ship the ones
#: spooled while Redis was down, with this one script. The pending row gets the decision's stream id as
#: its last element. Returns how many decisions were new.
LOG_DECISIONS = """
local n = tonumber(ARGV[1])
local logged = 0
for i = 2, 1 + 4 * n, 4 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    local sid = redis.call('XADD', KEYS[1], '*', 'row', ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], string.sub(ARGV[i + 2], 1, -2) .. ',"' .. sid .. '"]')
    redis.call('ZADD', KEYS[3], ARGV[i + 3], ARGV[i])
    logged = logged + 1
  end
end
if logged > 0 then redis.call('HINCRBY', KEYS[4], 'decisions', logged) end
for i = 2 + 4 * n, #ARGV, 2 do redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]) end
return logged
"""

#: KEYS meta, events, reward_stream, then every other key of the experiment but its events
#: (:func:`create_keys`). ARGV config, created_at, model, state (:func:`pack_state`), version, event JSON.
#: Creates the experiment and its reward stream's consumer group unless meta exists: 1, else 0. What a worker
#: that had not yet seen a purge wrote under the name since is removed first: a new experiment starts empty.
CREATE_EXPERIMENT = (
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', unpack(KEYS, 3))
redis.call('HSET', KEYS[1], 'config', ARGV[1], 'created_at', ARGV[2], 'model', ARGV[3], 'state', ARGV[4],
           'version', ARGV[5], 'reward_offset', '0-0', 'archive_offset', '0-0')
redis.call('RPUSH', KEYS[2], ARGV[6])
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[3], '"""
    + LEARNERS
    + """', '0', 'MKSTREAM')
return 1
"""
)


def create_keys(keys: Keys) -> list[str]:
    """KEYS of :data:`CREATE_EXPERIMENT`."""
    rest = [key for key in keys.all() if key not in (keys.meta, keys.events, keys.reward_stream)]
    return [keys.meta, keys.events, keys.reward_stream, *rest]


def claim_keys(keys: Keys) -> list[str]:
    """KEYS of :data:`CLAIM_REWARDS`."""
    return [keys.pending, keys.rewards, keys.reward_stream, keys.counts, keys.due, keys.meta]


def claim_args(now: float, window_s: float, experiment: str, claims: list[tuple[str, float, str]]) -> list:
    """ARGV of :data:`CLAIM_REWARDS` for (decision_id, value, source) claims."""
    args: list = [repr(float(now)), repr(float(window_s)), experiment]
    for decision_id, value, source in claims:
        args += [decision_id, repr(float(value)), source]
    return args


def apply_keys(keys: Keys) -> list[str]:
    """KEYS of :data:`APPLY_BATCH`."""
    return [keys.meta, keys.reward_stream, keys.lease]


def log_keys(keys: Keys) -> list[str]:
    """KEYS of :data:`LOG_DECISIONS`."""
    return [keys.decisions, keys.pending, keys.due, keys.counts, keys.assignments]


def log_args(records: list[DecisionRecord], assignments: dict[str, str] | None = None) -> list:
    """ARGV of :data:`LOG_DECISIONS`: the decisions, then unit -> :func:`assignment_json` texts."""
    args: list = [len(records)]
    for record in records:
        args += [record.decision_id, decision_json(record), pending_json(record), repr(float(record.time))]
    for unit, text in (assignments or {}).items():
        args += [unit, text]
    return args


# ---- learner and archive scripts ----------------------------------------------------------------------
#: KEYS reward_stream, lease. ARGV learner_id, count, start id ("0": the caller's own pending entries,
#: ">": entries never delivered). XREADGROUP as the consumer ``learner_id``, only while it holds the lease:
#: a learner that lost its lease cannot take entries the new holder would never claim. Returns the
#: entries ``[[id, [field, value, ...] or nil], ...]`` (nil: trimmed since delivered), or
#: :data:`LEASE_LOST`.
READ_REWARDS = (
    """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local read = redis.call('XREADGROUP', 'GROUP', '"""
    + LEARNERS
    + """', ARGV[1], 'COUNT', ARGV[2],
                        'STREAMS', KEYS[1], ARGV[3])
if not read then return {} end
return read[1][2]
"""
)

#: KEYS meta, decisions, pending, rewards, due, reward_stream, lease. ARGV holder id, expected
#: archive_offset, new archive_offset, then the archived decision ids. Once the archived rows are on
#: disk: forget the decisions' pending rows, rewards and due entries, move archive_offset, trim the
#: decision stream up to and including the new offset and the reward stream below reward_offset.
#: Returns 1, :data:`LEASE_LOST` or :data:`ARCHIVE_MOVED` having written nothing. The deletes come before
#: the first write that may take memory: Redis out of memory refuses a script only at such a write made
#: before any other, so the trim still runs whole then, and frees memory.
ARCHIVE_MOVED = -3
ARCHIVE_TRIM = """
if redis.call('GET', KEYS[7]) ~= ARGV[1] then return -1 end
if (redis.call('HGET', KEYS[1], 'archive_offset') or '0-0') ~= ARGV[2] then return -3 end
for first = 4, #ARGV, 1000 do
  local last = math.min(first + 999, #ARGV)
  redis.call('HDEL', KEYS[3], unpack(ARGV, first, last))
  redis.call('HDEL', KEYS[4], unpack(ARGV, first, last))
  redis.call('ZREM', KEYS[5], unpack(ARGV, first, last))
end
redis.call('HSET', KEYS[1], 'archive_offset', ARGV[3])
local ms, seq = string.match(ARGV[3], '^(%d+)-(%d+)$')
redis.call('XTRIM', KEYS[2], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
local applied = redis.call('HGET', KEYS[1], 'reward_offset')
if applied and applied ~= '0-0' then redis.call('XTRIM', KEYS[6], 'MINID', applied) end
return 1
"""


def read_keys(keys: Keys) -> list[str]:
    """KEYS of :data:`READ_REWARDS`."""
    return [keys.reward_stream, keys.lease]


def archive_trim_keys(keys: Keys) -> list[str]:
    """KEYS of :data:`ARCHIVE_TRIM`."""
    return [keys.meta, keys.decisions, keys.pending, keys.rewards, keys.due, keys.reward_stream, keys.lease]

"""Exact encodings of state arrays: the JSON one shared by the Bandit's JSON and the stores (format 1 files still
load), and the binary pack the Redis store keeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import banditkit as bk
from banditkit._codec import PACK_MAGIC, decode_arrays, encode_arrays, pack_arrays, unpack_arrays
from banditkit.bandit import FORMAT, FORMAT_1
from banditkit.service.stores.base import decode_state, encode_state

#: Bandits written by banditkit.bandit/1, with the decisions and probabilities that followed them then.
FORMAT_1_CASES = json.loads(Path(__file__).with_name("data").joinpath("bandit_format_1.json").read_text())


def nan_with_payload() -> np.ndarray:
    return np.array([0x7FF8_0000_0000_0123], dtype=np.uint64).view(np.float64)


ARRAYS = {
    "float64 with -0, inf, nan payload": np.concatenate([[0.1, -0.0, np.inf, -np.inf, 5e-324], nan_with_payload()]),
    "float32": np.array([[1 / 3, -2.5]], dtype=np.float32),
    "int64": np.array([[-(2**62), 7]], dtype=np.int64),
    "bool": np.array([True, False]),
    "big-endian": np.array([1.5, 2.25], dtype=">f8"),
    "empty (1, 0, 3)": np.zeros((1, 0, 3)),
    "transposed 3-d": np.arange(24, dtype=np.float64).reshape(2, 3, 4).transpose(2, 0, 1),
    "complex": np.array([1 + 2j]),
    "0-d": np.array(2.5),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_the_encoding_is_exact_in_dtype_shape_and_bytes(name):
    array = ARRAYS[name]
    back = decode_arrays(json.loads(json.dumps(encode_arrays({"a": array}))))["a"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
    assert back.flags.writeable and back.flags.c_contiguous


@pytest.mark.parametrize("name", ARRAYS)
def test_the_pack_is_exact_in_dtype_shape_and_bytes(name):
    array = ARRAYS[name]
    back = unpack_arrays(pack_arrays({"a": array}))["a"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
    assert back.flags.writeable and back.flags.c_contiguous and back.flags.owndata


def test_a_pack_of_many_arrays_keeps_their_order_and_aligns_each():
    """Every array of a pack, of any size, starts at a multiple of 16 bytes after the layout, in the given
    order; the arrays come back equal and independent of the packed bytes (writing one changes no other)."""
    blob = pack_arrays(ARRAYS)
    back = unpack_arrays(blob)
    assert list(back) == list(ARRAYS)
    for name, array in ARRAYS.items():
        assert back[name].tobytes() == np.ascontiguousarray(array).tobytes(), name
    (length,) = np.frombuffer(blob[4:8], dtype="<u4")
    layout = json.loads(blob[8 : 8 + length])
    assert (8 + length) % 16 == 0 and all(offset % 16 == 0 for *_, offset in layout)
    back["int64"][0, 0] = 1
    assert unpack_arrays(blob)["int64"][0, 0] == -(2**62)
    assert unpack_arrays(pack_arrays({})) == {}


def test_the_pack_of_a_large_state_holds_its_bytes_and_a_short_layout():
    bandit = bk.Bandit(["a", "b"], policy="linucb", seed=2, n_features=64)
    state = bandit.state
    assert len(pack_arrays(state)) - sum(array.nbytes for array in state.values()) < 400


def _pack_with_layout(layout: object, data: bytes = bytes(16)) -> bytes:
    text = json.dumps(layout).encode()
    text += b" " * (-(8 + len(text)) % 16)
    return PACK_MAGIC + len(text).to_bytes(4, "little") + text + data


@pytest.mark.parametrize(
    "blob, message, field",
    [
        (b"", "must start with", "state"),
        (encode_state({"a": np.zeros(1)}).encode(), "must start with", "state"),
        (PACK_MAGIC + (100).to_bytes(4, "little") + b"[[", "malformed layout", "state"),
        (_pack_with_layout({"a": 1}), "malformed layout", "state"),
        (_pack_with_layout([["a", "<f8", [3], 0]]), "has 16 bytes, expected 24", "state['a']"),
        (_pack_with_layout([["a", "<f8", [1], 16]]), "has 0 bytes, expected 8", "state['a']"),
        (_pack_with_layout([["a", "<f8", [1], -8]]), "negative offset", "state['a']"),
        (_pack_with_layout([["a", "|O", [1], 0]]), "booleans or numbers", "state['a']"),
        (_pack_with_layout([["a", "float99", [1], 0]]), "dtype", "state['a']"),
        (_pack_with_layout([["a", "<f8", [-1], 0]]), "sizes >= 0", "state['a']"),
    ],
)
def test_a_bad_pack_is_refused_naming_the_array(blob, message, field):
    with pytest.raises(bk.InvalidParameterError, match=message) as caught:
        unpack_arrays(blob)
    assert caught.value.field == field


def test_the_bandit_and_the_stores_write_the_same_encoding():
    bandit = bk.Bandit(["a", "b"], policy="linucb", seed=2, n_features=3)
    bandit.update_many(["a", "b", "a"], [1.0, 0.0, 0.5], contexts=np.arange(9.0).reshape(3, 3) / 9)
    written = bandit.to_dict()["state"]
    assert written == encode_arrays(bandit.state) == json.loads(encode_state(bandit.state))
    for key, value in decode_state(json.dumps(written)).items():
        assert value.tobytes() == bandit.state[key].tobytes()


def test_state_text_of_existing_stores_still_decodes():
    """What the stores wrote before the encoding moved to banditkit._codec (the same format)."""
    text = '{"pulls": {"dtype": "<f8", "shape": [1, 2], "data": "AAAAAAAA8D8AAAAAAAAAQA=="}}'
    state = decode_state(text)
    assert state["pulls"].tolist() == [[1.0, 2.0]] and encode_state(state) == text


@pytest.mark.parametrize(
    "item, message",
    [
        ({"dtype": "<f8", "shape": [2], "data": "AAAAAAAA8D8="}, "has 8 bytes, expected 16"),
        ({"dtype": "|O", "shape": [1], "data": "AAAAAAAA8D8="}, "booleans or numbers"),
        ({"dtype": "<f8", "shape": [1], "data": "not base64!"}, "base64"),
        ({"dtype": "<f8", "shape": [1]}, "base64"),
        ({"dtype": "float99", "shape": [1], "data": ""}, "dtype"),
    ],
)
def test_a_bad_encoding_is_refused_naming_the_array(item, message):
    with pytest.raises(bk.InvalidParameterError, match=message) as caught:
        decode_arrays({"pulls": item})
    assert caught.value.field == "state['pulls']"


@pytest.mark.parametrize("case", FORMAT_1_CASES)
def test_format_1_still_loads_and_continues_exactly(case):
    written = FORMAT_1_CASES[case]
    data = written["json"]
    assert data["format"] == FORMAT_1
    bandit = bk.Bandit.from_json(json.dumps(data))
    for key, item in data["state"].items():
        array = bandit.state[key]
        assert array.dtype.str == item["dtype"] and list(array.shape) == item["shape"]
        assert array.ravel().tolist() == item["data"]
    current = bandit.to_dict()
    assert current["format"] == FORMAT
    assert {k: v for k, v in current.items() if k not in ("format", "state", "policy")} == {
        k: v for k, v in data.items() if k not in ("format", "state", "policy")
    }
    # The policy as written; parameters added since (reward_range) are listed with their defaults.
    stored, policy = data["policy"], current["policy"]
    assert policy["name"] == stored["name"]
    assert all(policy["params"][key] == value for key, value in stored["params"].items())
    assert bk.make_policy(stored) == bandit.policy
    # Written again in the current format, it is the same bandit: the same next decisions as then.
    again = bk.Bandit.from_json(bandit.to_json())
    for restored in (bandit, again):
        context = np.array([0.3, -0.2]) if restored.policy.contextual else None
        assert restored.probabilities(context=context) == pytest.approx(written["probabilities"], abs=1e-12)
        assert [restored.select(context=context).arm for _ in written["next_arms"]] == written["next_arms"]


def test_an_unknown_format_is_refused():
    data = bk.Bandit(["a"], seed=0).to_dict()
    expected = r"format must be 'banditkit\.bandit/2' or 'banditkit\.bandit/1'"
    with pytest.raises(bk.InvalidParameterError, match=expected):
        bk.Bandit.from_dict(dict(data, format="banditkit.bandit/0"))


def _trained(policy: str = "thompson") -> dict:
    bandit = bk.Bandit(["a", "b"], policy, seed=0, n_features=2 if policy == "linucb" else None)
    context = np.array([[0.5, -0.5], [1.0, 0.0]]) if policy == "linucb" else None
    bandit.update_many(["a", "b"], [1.0, 0.0], contexts=context)
    return json.loads(bandit.to_json())


def _with_state(data: dict, key: str, array: np.ndarray) -> dict:
    return dict(data, state=dict(data["state"], **encode_arrays({key: array})))


@pytest.mark.parametrize(
    "change, field, message",
    [
        (lambda d: {k: v for k, v in d.items() if k != "pulls"}, "pulls", "lacks pulls"),
        (lambda d: dict(d, pulls=[1.0]), "pulls", "2 finite numbers, one per arm"),
        (lambda d: dict(d, pulls=[-1.0, 1.0]), "pulls", "at least 0.0"),
        (lambda d: dict(d, reward_sums=[1.0, "x"]), "reward_sums", "finite numbers"),
        (lambda d: dict(d, active=[True]), "active", "2 booleans"),
        (lambda d: dict(d, rng={"bit_generator": "os"}), "rng", "bit generator"),
        (lambda d: dict(d, rng={"bit_generator": "PCG64", "state": "no"}), "rng", "not a valid PCG64 state"),
        (lambda d: _with_state(d, "pulls", np.array([[1.0, np.nan]])), "state", r"state\['pulls'\] holds NaN"),
        (lambda d: _with_state(d, "pulls", np.ones((1, 3))), "state", r"shape \(1, 2\)"),
        (lambda d: _with_state(d, "reward_sums", np.ones((1, 2), dtype=np.float32)), "state", "must be float64"),
        (lambda d: dict(d, state={}), "state", "must have the keys"),
    ],
)
def test_a_bad_model_is_refused_naming_the_field(change, field, message):
    """A model from outside (a file, the service's warm start) is checked before anything is built on it."""
    with pytest.raises(bk.InvalidParameterError, match=message) as caught:
        bk.Bandit.from_dict(change(_trained()))
    assert caught.value.field == field


def test_an_append_buffer_of_any_length_loads_but_not_of_another_width():
    data = _trained("linucb")
    assert bk.Bandit.from_dict(data).probabilities(context=np.array([0.1, 0.2])) is not None
    policy = {"name": "bootstrapped_thompson", "params": {"n_replicas": 2, "refit_every": 2, "max_rows": 10}}
    bandit = bk.Bandit(["a", "b"], policy, seed=0, n_features=2)
    bandit.update_many(["a", "b", "a"], [1.0, 0.0, 1.0], contexts=np.ones((3, 2)))
    data = json.loads(bandit.to_json())
    assert bk.Bandit.from_dict(data).to_dict()["state"] == data["state"]  # 3 rows where the prior has 0
    with pytest.raises(bk.InvalidParameterError, match=r"state\['contexts'\] must have shape \(1, 0, 2\)"):
        bk.Bandit.from_dict(_with_state(data, "contexts", np.ones((1, 3, 5))))

"""The arm of an entity (pipeline.kernels.arms): shares within statistical tolerance of the split, stable across
calls, batches and orders, growing a share only moves champion entities, a new salt reshuffles; the contract guard
and the job file's split (pipeline.config.ModelRef); the assignment period's change in words (pipeline.ab)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline import ab
from pipeline.config import ModelRef
from pipeline.kernels.arms import (
    BUCKETS,
    CHAMPION,
    arm_of,
    assign,
    bucket,
    buckets,
    contract_differences,
    key_text,
)

N = 1_000_000
KEYS = np.arange(N, dtype=np.int64)


@pytest.fixture(scope="module")
def million() -> np.ndarray:
    """The buckets of 1,000,000 integer keys under one salt (computed once: ~1 s)."""
    return buckets(KEYS, "churn_daily")


def _arms(b: np.ndarray, split: list[tuple[str, int]]) -> np.ndarray:
    out = np.full(len(b), CHAMPION, dtype=object)
    first = 0
    for name, bp in split:
        out[(b >= first) & (b < first + bp)] = name
        first += bp
    return out


@pytest.mark.parametrize("split", [[("b", 1000)], [("b", 3000)], [("b", 1000), ("c", 250)], [("b", 1)]])
def test_arm_shares_on_a_million_keys_are_within_four_sigma_of_the_split(million: np.ndarray, split: list) -> None:
    arms = _arms(million, split)
    for name, bp in [*split, (CHAMPION, BUCKETS - sum(bp for _, bp in split))]:
        p = bp / BUCKETS
        share = float(np.mean(arms == name))
        assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / N), (name, share, p)


def test_assign_on_a_million_keys_is_the_buckets_cut_by_the_split(million: np.ndarray) -> None:
    got = assign(KEYS, "churn_daily", [("b", 1000)])
    assert got.tolist() == _arms(million, [("b", 1000)]).tolist()
    share = float(np.mean(got == "b"))
    assert abs(share - 0.1) <= 4 * math.sqrt(0.1 * 0.9 / N), share
    assert million.min() >= 0 and million.max() == BUCKETS - 1


def test_the_same_key_gets_the_same_arm_in_any_call_batch_or_order() -> None:
    keys = list(range(50_000))
    split = [("b", 2000)]
    whole = assign(keys, "s", split)
    assert assign(keys, "s", split).tolist() == whole.tolist()
    batches = np.concatenate([assign(keys[i:i + 777], "s", split) for i in range(0, len(keys), 777)])
    assert batches.tolist() == whole.tolist()
    order = np.random.default_rng(5).permutation(len(keys))
    shuffled = assign([keys[i] for i in order], "s", split)
    assert shuffled.tolist() == whole[order].tolist()
    assert [arm_of(k, "s", split) for k in keys[:2000]] == whole[:2000].tolist()
    # a known value, pinned: a change of the hash is a reshuffle of every entity, never an accident
    assert [bucket(k, "churn_daily") for k in (0, 1, 12345, "00123")] == [7134, 4002, 9449, 2146]
    assert buckets([0, 1, 12345, "00123"], "churn_daily").tolist() == [7134, 4002, 9449, 2146]


def test_an_integer_key_and_its_zero_padded_text_are_two_entities() -> None:
    assert key_text(123) == key_text("123") == key_text(np.int64(123)) == key_text(123.0) == "123"
    assert key_text("00123") == "00123"
    padded = [f"{k:06d}" for k in range(2000)]
    plain = list(range(2000))
    differ = np.mean(buckets(padded, "s") != buckets(plain, "s"))
    assert differ > 0.99, differ
    assert buckets([None, float("nan"), 7], "s").tolist()[:2] == [-1, -1]
    assert assign([None, 7], "s", [("b", 5000)])[0] is None
    with pytest.raises(TypeError, match="boolean"):
        key_text(True)


def test_growing_a_share_only_moves_champion_entities_into_the_arm(million: np.ndarray) -> None:
    ten, twenty = _arms(million, [("b", 1000)]), _arms(million, [("b", 2000)])
    assert (twenty[ten == "b"] == "b").all(), "an entity of the arm stays in it"
    moved = (ten == CHAMPION) & (twenty == "b")
    assert abs(moved.mean() - 0.1) < 0.002
    assert not ((ten == "b") & (twenty == CHAMPION)).any()
    keys = list(range(20_000))
    small, big = assign(keys, "s", [("b", 1000)]), assign(keys, "s", [("b", 2000)])
    assert (big[small == "b"] == "b").all()


def test_a_new_salt_reshuffles_every_entity() -> None:
    keys = list(range(100_000))
    one, two = assign(keys, "salt-1", [("b", 1000)]), assign(keys, "salt-2", [("b", 1000)])
    changed = float(np.mean(one != two))
    assert abs(changed - 2 * 0.1 * 0.9) < 0.01, changed  # independent draws: 18% change arm
    assert abs(float(np.mean(two == "b")) - 0.1) < 0.01


def test_a_split_must_leave_the_champion_some_buckets() -> None:
    with pytest.raises(ValueError, match="the champion must keep some"):
        assign([1], "s", [("b", 6000), ("c", 4000)])
    with pytest.raises(ValueError, match="not listed in a split"):
        assign([1], "s", [(CHAMPION, 100)])
    assert set(assign(list(range(100)), "s", [])) == {CHAMPION}


CARD = {"task": "binary_classification", "classes": [0, 1], "positive_class": 1,
        "inputs": [{"name": "age", "type": "int", "nullable": False},
                   {"name": "plan", "type": "category", "nullable": True, "categories": ["a", "b"]}]}


@pytest.mark.parametrize(("change", "expected"), [
    ({}, []),
    ({"inputs": [{"name": "age", "type": "int", "nullable": False},
                 {"name": "plan", "type": "category", "nullable": True, "categories": ["a", "b", "c"]}]}, []),
    ({"inputs": [{"name": "age", "type": "int", "nullable": False}]}, ["input 'plan' is missing"]),
    ({"inputs": [*CARD["inputs"], {"name": "x", "type": "float"}]}, ["input 'x' is extra"]),
    ({"inputs": [{"name": "age", "type": "float", "nullable": False}, CARD["inputs"][1]]},
     ["input 'age' is float (champion: int)"]),
    ({"inputs": [{"name": "age", "type": "int", "nullable": True}, CARD["inputs"][1]]},
     ["input 'age' is nullable (champion: not nullable)"]),
    ({"task": "regression"}, ["task is 'regression' (champion: 'binary_classification')"]),
    ({"classes": ["0", "1"]}, []),
    ({"classes": [0, 1, 2]}, ["classes is ['0', '1', '2'] (champion: ['0', '1'])"]),
    ({"positive_class": 0}, ["positive_class is 0 (champion: 1)"]),
])
def test_contract_differences(change: dict, expected: list[str]) -> None:
    assert contract_differences(CARD, {**CARD, **change}) == expected


@pytest.mark.parametrize(("given", "basis_points"), [
    (10, 1000), ("10%", 1000), ("10", 1000), (" 2.5 % ", 250), (0.01, 1), ("99.99%", 9999), (33.33, 3333)])
def test_the_split_accepts_a_percent_as_number_or_text(given: object, basis_points: int) -> None:
    model = ModelRef(name="churn", split={"challenger": given})
    assert model.split_basis_points() == [("challenger", basis_points)]
    assert model.shadowed() == ["challenger"]


@pytest.mark.parametrize(("split", "message"), [
    ({"b": "ten"}, "is not a share; write a percent such as 10 or '10%'"),
    ({"b": 0}, "must be a percent above 0 and below 100"),
    ({"b": -5}, "must be a percent above 0 and below 100"),
    ({"b": "100%"}, "must be a percent above 0 and below 100"),
    ({"b": 0.001}, "in steps of 0.01"),
    ({"b": 60, "c": 40}, "split gives 100% to other arms: the champion must keep some traffic"),
    ({"b": 70, "c": "45%"}, "split gives 115% to other arms"),
    ({"champion": 10}, "split names the champion"),
])
def test_the_split_refuses_bad_shares_and_the_champion(split: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("%", "%")):
        ModelRef(name="churn", split=split)


def test_a_split_naming_the_champions_own_ref_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"split names the champion \('3'\)"):
        ModelRef(name="churn", ref="3", split={"3": 10})
    assert ModelRef(name="churn", challengers=["b"], split={"b": 5, "c": 5}).shadowed() == ["b", "c"]


def _period(arms: list[ab.Arm], champion: int = 3, salt: str = "s") -> dict:
    import json

    return {"champion_version": champion, "salt": salt, "arms": json.dumps(ab.period_arms(arms))}


@pytest.mark.parametrize(("before", "now", "text"), [
    (None, dict(arms=[ab.Arm("challenger", 4, 1000)]), "first split"),
    (_period([ab.Arm("challenger", 4, 1000)]), dict(arms=[ab.Arm("challenger", 4, 2000)]), "challenger 10% -> 20%"),
    (_period([ab.Arm("challenger", 4, 1000)]), dict(arms=[ab.Arm("challenger", 4, 1000)], salt="t"),
     "salt changed: every entity reshuffled"),
    (_period([ab.Arm("challenger", 4, 1000)]), dict(arms=[ab.Arm("challenger", 5, 1000)]), "challenger v4 -> v5"),
    (_period([ab.Arm("challenger", 4, 1000)]), dict(arms=[ab.Arm("challenger", 4, 1000)], champion=4),
     "champion v3 -> v4"),
    (_period([ab.Arm("challenger", 4, 1000)]), dict(arms=[]), "split removed"),
    (_period([ab.Arm("a", 4, 1000), ab.Arm("b", 5, 1000)]), dict(arms=[ab.Arm("a", 4, 2000), ab.Arm("b", 5, 1000)]),
     "a 10% -> 20%; b's buckets moved (1000.. -> 2000..: an arm before it changed): its entities changed"),
    (_period([ab.Arm("a", 4, 1000)]), dict(arms=[ab.Arm("a", 4, 1000), ab.Arm("b", 5, 250)]),
     "arm b added at 2.5%"),
])
def test_a_period_change_is_said_in_words(before: dict | None, now: dict, text: str) -> None:
    assert ab.change_text(before, now.get("champion", 3), now.get("salt", "s"), now["arms"]) == text


def test_a_fingerprint_is_the_champion_the_salt_and_the_arms() -> None:
    arms = [ab.Arm("challenger", 4, 1000)]
    mark = ab.fingerprint(3, "s", arms)
    assert mark == ab.fingerprint(3, "s", [ab.Arm("challenger", 4, 1000, error="a failure is not a change")])
    others = {ab.fingerprint(4, "s", arms), ab.fingerprint(3, "t", arms), ab.fingerprint(3, "s", [ab.Arm("c", 4, 1000)]),
              ab.fingerprint(3, "s", [ab.Arm("challenger", 5, 1000)]), ab.fingerprint(3, "s", [ab.Arm("challenger", 4, 999)])}
    assert mark not in others and len(others) == 5
    assert ab.fingerprint(3, "s", []) == "no split"

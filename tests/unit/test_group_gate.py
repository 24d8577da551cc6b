"""GroupGate: one running item per group, in sequence order; failures hand back the rest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.worker.group_gate import GroupGate


def test_a_second_item_of_a_group_waits_and_runs_after_the_first() -> None:
    gate: GroupGate[str] = GroupGate()
    assert gate.admit("A", 1, "a1", "a1")
    assert gate.admit("B", 2, "b1", "b1")  # another group runs beside it
    assert not gate.admit("A", 3, "a2", "a2")
    assert gate.finish("A", "a1", ok=True) == ("a2", [])
    assert gate.finish("A", "a2", ok=True) == (None, [])
    assert gate.admit("A", 4, "a3", "a3")


def test_waiting_items_run_in_sequence_order_not_arrival_order() -> None:
    gate: GroupGate[str] = GroupGate()
    gate.admit("A", 1, "a1", "a1")
    gate.admit("A", 9, "a9", "a9")
    gate.admit("A", 5, "a5", "a5")
    assert gate.finish("A", "a1", ok=True)[0] == "a5"
    assert gate.finish("A", "a5", ok=True)[0] == "a9"


def test_a_failure_hands_back_every_waiting_item_of_its_group_only() -> None:
    gate: GroupGate[str] = GroupGate()
    gate.admit("A", 1, "a1", "a1")
    gate.admit("A", 2, "a2", "a2")
    gate.admit("A", 3, "a3", "a3")
    gate.admit("B", 4, "b1", "b1")
    gate.admit("B", 5, "b2", "b2")
    assert gate.finish("A", "a1", ok=False) == (None, ["a2", "a3"])
    assert gate.waiting() == 1 and gate.running() == 1
    assert gate.admit("A", 2, "a2'", "a2'")  # the group is free again


def test_finishing_an_item_that_is_not_running_changes_nothing() -> None:
    gate: GroupGate[str] = GroupGate()
    gate.admit("A", 1, "a1", "a1")
    gate.admit("A", 2, "a2", "a2")
    assert gate.finish("A", "a2", ok=True) == (None, [])  # a2 waits; it is not running
    assert gate.finish("A", "zz", ok=False) == (None, [])
    assert gate.running() == 1 and gate.waiting() == 1


operations = st.lists(st.tuples(st.sampled_from("ABC"), st.booleans(), st.booleans()),
                      max_size=60)


@given(operations)
def test_never_two_running_per_group_and_starts_follow_sequence(
        ops: list[tuple[str, bool, bool]]) -> None:
    """Random admits and finishes: per group at most one runs, runs start in sequence
    order between failures, and every admitted item is run or handed back."""
    gate: GroupGate[int] = GroupGate()
    running: dict[str, int] = {}
    started: dict[str, list[int]] = {g: [] for g in "ABC"}
    handed_back: list[int] = []
    admitted: list[int] = []
    for sequence, (group, admit, ok) in enumerate(ops):
        if admit or group not in running:
            admitted.append(sequence)
            if gate.admit(group, sequence, sequence, sequence):
                assert group not in running
                running[group] = sequence
                started[group].append(sequence)
        else:
            following, back = gate.finish(group, running.pop(group), ok=ok)
            handed_back += back
            if back:
                started[group].append(-1)  # a failure: redelivery restarts the order
            if following is not None:
                assert ok
                running[group] = following
                started[group].append(following)
    for group, seq in started.items():
        segment: list[int] = []
        for s in [*seq, -1]:
            if s == -1:
                assert segment == sorted(segment), (group, seq)
                segment = []
            else:
                segment.append(s)
    still_waiting = gate.waiting()
    ran = {s for seq in started.values() for s in seq if s >= 0}
    assert len(ran) + len(handed_back) + still_waiting == len(admitted)

"""Six 45 MB uploads at once drove one portal worker to a gigabyte, and it kept 3.8 GB minutes
later. A process reads one large sheet at a time (the others wait their turn; small sheets do
not) and gives the memory back to the system afterwards."""

import threading

import pytest

from nccid import memory
from nccid.clinical.parsing import SheetGate

WAIT = 10  # seconds: only a bound on a failing test, never a pause


def _reader(gate: SheetGate, size: int, inside: threading.Event, leave: threading.Event):
    def read():
        with gate.turn(size):
            inside.set()
            leave.wait(WAIT)

    return threading.Thread(target=read)


def test_a_second_large_sheet_waits_until_the_first_is_read():
    waiting = threading.Event()
    gate = SheetGate(slots=1, large=100, on_wait=waiting.set)
    first_in, first_out, second_in, second_out = (threading.Event() for _ in range(4))
    first = _reader(gate, 100, first_in, first_out)
    second = _reader(gate, 100, second_in, second_out)
    first.start()
    assert first_in.wait(WAIT)
    second.start()
    assert waiting.wait(WAIT)  # the second has found the turn taken...
    assert not second_in.is_set()  # ...and has not begun
    first_out.set()
    assert second_in.wait(WAIT)
    second_out.set()
    first.join(WAIT), second.join(WAIT)


def test_a_small_sheet_does_not_wait_for_a_large_one():
    gate = SheetGate(slots=1, large=100, on_wait=lambda: pytest.fail("a small sheet waited"))
    large_in, large_out = threading.Event(), threading.Event()
    large = _reader(gate, 100, large_in, large_out)
    large.start()
    assert large_in.wait(WAIT)
    with gate.turn(99):
        pass
    large_out.set()
    large.join(WAIT)


def test_memory_is_given_back_after_a_large_sheet(monkeypatch):
    trims = []
    monkeypatch.setattr(memory, "_trim", trims.append)
    gate = SheetGate(slots=1, large=100)
    with gate.turn(99):
        pass
    assert trims == []
    with pytest.raises(RuntimeError), gate.turn(100):
        raise RuntimeError  # a failed read gives its turn and its memory back too
    assert trims == [0]
    with gate.turn(100):  # the turn was given back
        pass


def test_give_back_memory_is_harmless_without_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_trim", None)
    memory.give_memory_back()

"""Unit tests of crawler.throttle: a HostSlot's priority order, delay, concurrency and pauses."""

from crawler.request import Request
from crawler.throttle import HostSlot


def _slot(concurrency: int = 1, delay: float = 0.0) -> HostSlot:
    return HostSlot("example.com", concurrency=concurrency, delay=delay)


def _request(path: str, priority: int = 0) -> Request:
    return Request(f"http://example.com/{path}", priority=priority)


def test_higher_priority_first_then_fifo() -> None:
    slot = _slot(concurrency=100)
    for path, priority in [("a", 0), ("b", 5), ("c", 0), ("d", -1), ("e", 5), ("f", 0)]:
        slot.push(_request(path, priority))
    taken = [slot.take().url.rsplit("/", 1)[1] for _ in range(6)]
    assert taken == ["b", "e", "a", "c", "f", "d"]
    assert slot.queue == []


def test_fifo_across_interleaved_pushes() -> None:
    slot = _slot(concurrency=100)
    slot.push(_request("a"))
    slot.push(_request("b"))
    assert slot.take().url.endswith("/a")
    slot.push(_request("c", priority=1))
    slot.push(_request("d"))
    assert [slot.take().url[-1] for _ in range(3)] == ["c", "b", "d"]


def test_ready_at_needs_a_buffered_request() -> None:
    slot = _slot()
    assert slot.ready_at(10.0) is None
    slot.push(_request("a"))
    assert slot.ready_at(10.0) == 10.0


def test_ready_at_honours_the_delay() -> None:
    slot = _slot(concurrency=5, delay=2.0)
    for path in "abc":
        slot.push(_request(path))
    slot.take()
    assert slot.ready_at(10.0) == 10.0  # taking is not sending: the delay starts on the wire
    slot.sent(10.0)
    assert slot.next_start == 12.0
    assert slot.ready_at(10.5) == 12.0
    assert slot.ready_at(13.0) == 13.0
    slot.take()
    slot.sent(13.0)
    assert slot.ready_at(13.0) == 15.0


def test_a_send_after_a_long_idle_counts_from_now() -> None:
    slot = _slot(concurrency=5, delay=1.0)
    slot.sent(0.0)
    slot.sent(100.0)
    assert slot.next_start == 101.0


def test_ready_at_honours_concurrency() -> None:
    slot = _slot(concurrency=2)
    for path in "abc":
        slot.push(_request(path))
    slot.take()
    assert slot.has_room()
    slot.take()
    assert not slot.has_room()
    assert slot.ready_at(0.0) is None
    slot.finish()
    assert slot.active == 1
    assert slot.ready_at(0.0) == 0.0


def test_configure_sets_the_real_limits() -> None:
    slot = _slot(concurrency=1, delay=0.0)
    for path in "ab":
        slot.push(_request(path))
    slot.take()
    assert slot.ready_at(0.0) is None
    slot.configure(concurrency=4, delay=3.0)
    assert slot.ready_at(0.0) == 0.0
    slot.take()
    slot.sent(0.0)
    assert slot.next_start == 3.0


def test_pause_until_only_moves_forward() -> None:
    slot = _slot(concurrency=5)
    slot.push(_request("a"))
    slot.pause_until(30.0)
    assert slot.ready_at(1.0) == 30.0
    slot.pause_until(20.0)
    assert slot.ready_at(1.0) == 30.0
    assert slot.ready_at(31.0) == 31.0


def test_delay_counts_from_the_end_of_a_pause() -> None:
    slot = _slot(concurrency=5, delay=2.0)
    for path in "ab":
        slot.push(_request(path))
    slot.pause_until(30.0)
    slot.take()
    slot.sent(30.0)
    assert slot.ready_at(30.0) == 32.0


def test_waiters_block_new_starts() -> None:
    slot = _slot(concurrency=5)
    slot.push(_request("a"))
    slot.waiters = 1
    assert slot.has_room()
    assert slot.ready_at(0.0) is None
    slot.waiters = 0
    assert slot.ready_at(0.0) == 0.0


def test_repr_shows_live_state() -> None:
    slot = _slot(concurrency=2, delay=1.5)
    slot.push(_request("a"))
    slot.push(_request("b"))
    slot.take()
    slot.sent(4.0)
    assert repr(slot) == ("<HostSlot example.com active=1/2 delay=1.5 buffered=1 next_start=5.500>")


def test_an_answer_starts_the_hosts_rest_and_not_a_pace_between_starts() -> None:
    slot = HostSlot("example.com", concurrency=1, delay=0.5, rest=0.2)  # autothrottle's pace
    slot.sent(10.0)
    assert slot.next_start == 10.5
    slot.landed(10.4)
    assert slot.next_start == 10.6  # the rest (download_delay, Crawl-delay) from the answer
    slot.configure(1, 0.3)  # a faster pace counts from the start, the rest from the answer
    assert slot.next_start == 10.6


def test_an_answer_on_a_host_with_requests_in_parallel_changes_nothing() -> None:
    slot = HostSlot("example.com", concurrency=2, delay=0.5, rest=0.5)
    slot.sent(10.0)
    slot.landed(10.4)
    assert slot.next_start == 10.5

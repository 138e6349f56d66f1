"""Property tests (hypothesis) of the argument checks of the whole public API: the constructors and
methods of Publisher, Subscriber, Requester, Replier, Pusher, Puller, and the utilities (os_name,
segment_info, force_unlink, serialize/deserialize).

For arbitrary wrong values (ints out of range, floats, NaN, infinities, negative timeouts, None where
it is not allowed, str/bytes confusion, huge sizes, objects that are not buffers) every call raises an
SHMError that is also the matching builtin (TypeError for a wrong type, ValueError for a wrong value)
with a non-empty message, consumes or sends nothing, and leaves no segment behind. Valid values
round-trip. Every test is bounded (max_examples) so the file runs in well under a minute.
"""

from __future__ import annotations

import math
import os
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, Tuple, Type

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import shmcomm
from naming import unique_name
from shmcomm import (Publisher, Puller, Pusher, Replier, Requester, SHMError, SHMSerializationError,
                     Subscriber)

SHM_DIR = "/dev/shm"
PATTERNS = ("pubsub", "reqrep", "pipeline")
KEEPERS = {"pubsub": Publisher, "reqrep": Replier, "pipeline": Pusher}
FOLLOWERS = {"pubsub": Subscriber, "reqrep": Requester, "pipeline": Puller}
CLASSES = {cls.__name__: cls for cls in (*KEEPERS.values(), *FOLLOWERS.values())}

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


# ---- helpers ---------------------------------------------------------------------------------------------

def refused(call: Callable[[], Any], builtin: Tuple[Type[BaseException], ...]) -> SHMError:
    """Runs a call that must be refused: an SHMError that is also one of ``builtin``, with a message."""
    try:
        result = call()
    except SHMError as exc:
        assert isinstance(exc, builtin), (
            f"{type(exc).__name__}({exc}) is not a {' or '.join(b.__name__ for b in builtin)}")
        assert str(exc).strip(), f"{type(exc).__name__} with an empty message"
        return exc
    except BaseException as exc:
        raise AssertionError(f"raised {type(exc).__name__}({exc}), which is not an SHMError") from exc
    if hasattr(result, "close"):  # an endpoint that should not exist: do not leak its segment
        result.close()
    raise AssertionError(f"accepted (returned {result!r})")


def no_segment(name: str) -> None:
    for pattern in PATTERNS:
        path = os.path.join(SHM_DIR, shmcomm.os_name(name, pattern))
        assert not os.path.exists(path), f"{path} left behind"


def close_quietly(endpoint: Any) -> None:
    if endpoint is not None:
        endpoint.close()


# ---- strategies: (value, the builtin its refusal must be) -------------------------------------------------

WRONG_TYPE_SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(), st.text(max_size=6),
    st.binary(max_size=6), st.lists(st.integers(), max_size=2), st.complex_numbers(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False), st.fractions(), st.just(object()),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))


def bad_int(low: int, high: int) -> st.SearchStrategy:
    """An int argument that must be in [low, high]: wrong types (TypeError) or ints outside the range,
    small and huge (ValueError)."""
    out_of_range = st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1),
                             st.sampled_from([-(2 ** 63), 2 ** 64, 2 ** 200, -1, 0]).filter(
                                 lambda v: not low <= v <= high))
    return st.one_of(WRONG_TYPE_SCALARS.map(lambda v: (v, TypeError)),
                     out_of_range.map(lambda v: (v, ValueError)))


BAD_TIMEOUT = st.one_of(
    st.floats(max_value=-1e-12, allow_infinity=True).map(lambda v: (v, ValueError)),  # -inf included
    st.integers(max_value=-1).map(lambda v: (v, ValueError)),
    st.just((math.nan, ValueError)),
    st.one_of(st.booleans(), st.text(max_size=4), st.binary(max_size=4), st.lists(st.floats(), max_size=1),
              st.complex_numbers(allow_nan=False), st.decimals(allow_nan=False),
              st.fractions()).filter(lambda v: not v == 0).map(lambda v: (v, TypeError)))
# Zeros of a wrong type (False, Decimal(0), Fraction(0), 0j) compare equal to 0: a separate test.
ZERO_OF_A_WRONG_TYPE = [False, Decimal(0), Fraction(0), 0j, -0j]

NOT_A_STR = st.one_of(st.integers(), st.floats(), st.none(), st.binary(min_size=1, max_size=20),
                      st.booleans(), st.lists(st.text(max_size=3), max_size=2), st.just(b"robot/pose"),
                      st.just(bytearray(b"robot/pose")), st.just(memoryview(b"robot/pose")))

NOT_A_BUFFER = st.one_of(st.integers(), st.floats(), st.none(), st.text(max_size=10), st.booleans(),
                         st.lists(st.integers(0, 255), max_size=4), st.dictionaries(st.text(max_size=2),
                                                                                    st.integers(), max_size=2),
                         st.just(object()), st.just(Decimal(1)))

NOT_A_METHOD = st.one_of(st.text(max_size=8).filter(lambda s: s not in ("pickle", "msgpack", "raw", "bytes")),
                         st.none(), st.integers(), st.just(b"pickle"), st.just(["pickle"]), st.floats())


# ---- constructors ---------------------------------------------------------------------------------------

KEEPER_LIMITS = {"num_slots": (2, 1 << 24), "slot_size": (1, 1 << 30), "max_peers": (2, 254)}


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), param=st.sampled_from(sorted(KEEPER_LIMITS)), data=st.data())
@example(pattern="pubsub", param="num_slots", data=None)
def test_keeper_sizes_are_checked(pattern: str, param: str, data: Any) -> None:
    value, builtin = (2 ** 64, ValueError) if data is None else data.draw(bad_int(*KEEPER_LIMITS[param]))
    name = unique_name("keeper-size")
    refused(lambda: KEEPERS[pattern](name, **{param: value}), (builtin,))
    no_segment(name)


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS),
       mode=st.one_of(st.integers().filter(lambda m: m not in (0o600, 0o660, 0o666)), WRONG_TYPE_SCALARS))
@example(pattern="pubsub", mode=384.0)  # 0o600 as a float
@example(pattern="reqrep", mode=[0o600])  # unhashable
@example(pattern="pipeline", mode="0o600")
@example(pattern="pubsub", mode=0o777)
def test_keeper_mode_is_checked(pattern: str, mode: Any) -> None:
    name = unique_name("keeper-mode")
    exc = refused(lambda: KEEPERS[pattern](name, mode=mode), (TypeError, ValueError))
    assert "mode" in str(exc)
    no_segment(name)


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), data=st.data())
@example(pattern="pubsub", data=None)
def test_follower_timeout_connect_is_checked(pattern: str, data: Any) -> None:
    value, builtin = (-math.inf, ValueError) if data is None else data.draw(
        st.one_of(BAD_TIMEOUT, st.just((None, ValueError))))
    name = unique_name("follower-connect")
    exc = refused(lambda: FOLLOWERS[pattern](name, timeout_connect=value), (builtin,))
    assert "timeout_connect" in str(exc)


@FEW
@given(pattern=st.sampled_from(PATTERNS), value=st.floats(min_value=1e10, allow_infinity=True))
@example(pattern="pubsub", value=math.inf)
@example(pattern="reqrep", value=1e300)
def test_follower_huge_timeout_connect_waits_or_is_refused(pattern: str, value: float) -> None:
    """A huge timeout_connect (years, or infinity) with the keeper there: attaches at once, or is
    refused as a ValueError; never an OverflowError."""
    name = unique_name("follower-huge")
    with KEEPERS[pattern](name, num_slots=2, slot_size=8):
        try:
            follower = FOLLOWERS[pattern](name, timeout_connect=value)
        except SHMError as exc:
            refused(lambda: (_ for _ in ()).throw(exc), (ValueError,))
        except BaseException as exc:
            raise AssertionError(f"timeout_connect={value!r}: {type(exc).__name__}({exc})") from exc
        else:
            follower.close()
    no_segment(name)


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), data=st.data())
def test_follower_spin_us_is_checked(pattern: str, data: Any) -> None:
    value, builtin = data.draw(bad_int(0, 1_000_000))
    refused(lambda: FOLLOWERS[pattern](unique_name("spin"), timeout_connect=0, spin_us=value), (builtin,))


@SETTINGS
@given(cls=st.sampled_from(sorted(CLASSES)), name=NOT_A_STR)
def test_names_must_be_str_everywhere(cls: str, name: Any) -> None:
    kwargs: Dict[str, Any] = {"timeout_connect": 0} if CLASSES[cls] in FOLLOWERS.values() else {}
    exc = refused(lambda: CLASSES[cls](name, **kwargs), (TypeError,))
    assert "str" in str(exc)
    refused(lambda: shmcomm.os_name(name), (TypeError,))


@SETTINGS
@given(cls=st.sampled_from(sorted(CLASSES)), method=NOT_A_METHOD)
def test_serialization_is_checked_everywhere(cls: str, method: Any) -> None:
    name = unique_name("ser")
    kwargs: Dict[str, Any] = {"timeout_connect": 0} if CLASSES[cls] in FOLLOWERS.values() else {}
    exc = refused(lambda: CLASSES[cls](name, serialization=method, **kwargs), (ValueError, TypeError))
    assert isinstance(exc, SHMSerializationError) or "serialization" in str(exc)
    no_segment(name)
    refused(lambda: shmcomm.serialize.serialize(1, method), (ValueError, TypeError))
    refused(lambda: shmcomm.serialize.deserialize(b"\x80\x05K\x01.", method), (ValueError, TypeError))


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), num_slots=st.integers(2, 64), slot_size=st.integers(1, 2048),
       max_peers=st.integers(2, 254), mode=st.sampled_from([0o600, 0o660, 0o666]),
       timeout_connect=st.one_of(st.floats(0, 2), st.integers(0, 2)), spin_us=st.integers(0, 1000),
       serialization=st.sampled_from(["pickle", "msgpack", "raw"]))
def test_valid_arguments_round_trip(pattern: str, num_slots: int, slot_size: int, max_peers: int, mode: int,
                                    timeout_connect: float, spin_us: int, serialization: str) -> None:
    name = unique_name("valid")
    payload = bytes(range(256)) * (slot_size // 256) + bytes(slot_size % 256)
    with KEEPERS[pattern](name, num_slots=num_slots, slot_size=slot_size, max_peers=max_peers, mode=mode,
                          serialization=serialization) as keeper, \
            FOLLOWERS[pattern](name, timeout_connect=timeout_connect, spin_us=spin_us,
                               serialization=serialization) as follower:
        path = os.path.join(SHM_DIR, shmcomm.os_name(name, pattern))
        assert os.stat(path).st_mode & 0o777 == mode
        stats = follower.stats()
        assert (stats["num_slots"], stats["slot_size"]) == (num_slots, slot_size), stats
        if pattern == "reqrep":
            follower.send_bytes(payload, timeout=1.0)
            assert keeper.recv_bytes(timeout=5.0) == payload
            assert keeper.send_bytes(payload[::-1]) is True
            assert follower.recv_bytes(timeout=5.0) == payload[::-1]
        else:
            assert keeper.send_bytes(payload) is True
            assert follower.recv_bytes(timeout=5.0) == payload
    no_segment(name)


# ---- methods ---------------------------------------------------------------------------------------------

class Channel:
    """An open channel of each pattern with one message waiting for its follower (pubsub, pipeline)
    or keeper (reqrep: a request), so that a refused receive can be seen to consume nothing."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.name = unique_name("methods-" + pattern)
        lossless = {"lossless": True} if pattern == "pubsub" else {}
        self.keeper = KEEPERS[pattern](self.name, num_slots=4, slot_size=64, **lossless)
        self.follower = None
        try:
            self.follower = FOLLOWERS[pattern](self.name, timeout_connect=1.0)
            if pattern == "reqrep":
                self.follower.send("waiting", timeout=1.0)
            else:
                self.keeper.send("waiting")
        except BaseException:
            self.close()
            raise

    def receiver(self) -> Any:
        return self.keeper if self.pattern == "reqrep" else self.follower

    def still_waiting(self) -> None:
        """The message is still there, and nothing else was sent."""
        receiver = self.receiver()
        assert receiver.recv(timeout=5.0) == "waiting"
        assert receiver.recv(timeout=0) is None

    def close(self) -> None:
        close_quietly(self.follower)
        close_quietly(self.keeper)
        no_segment(self.name)


@pytest.fixture
def channels() -> Iterator[Callable[[str], Channel]]:
    opened = []

    def make(pattern: str) -> Channel:
        # one channel at a time: the previous example's is closed (and its segment checked gone)
        while opened:
            opened.pop().close()
        opened.append(Channel(pattern))
        return opened[-1]

    yield make
    for channel in opened:
        channel.close()


def timeout_calls(ch: Channel, timeout: Any) -> Dict[str, Callable[[], Any]]:
    """Every method with a timeout, on the endpoint where it applies."""
    k, f = ch.keeper, ch.follower
    calls: Dict[str, Callable[[], Any]] = {}
    if ch.pattern == "pubsub":
        calls.update({
            "Subscriber.recv": lambda: f.recv(timeout=timeout),
            "Subscriber.recv_bytes": lambda: f.recv_bytes(timeout=timeout),
            "Subscriber.recv_into": lambda: f.recv_into(bytearray(64), timeout=timeout),
            "Subscriber.recv_many": lambda: f.recv_many(4, timeout=timeout),
            "Subscriber.recv_many_bytes": lambda: f.recv_many_bytes(4, timeout=timeout),
            "Subscriber.latest": lambda: f.latest(timeout=timeout),
            "Subscriber.latest_bytes": lambda: f.latest_bytes(timeout=timeout),
            "Subscriber.recv_view": lambda: f.recv_view(timeout=timeout),
            "Publisher.send": lambda: k.send("x", block=True, timeout=timeout),
            "Publisher.send_bytes": lambda: k.send_bytes(b"x", block=True, timeout=timeout),
            "Publisher.send_many_bytes": lambda: k.send_many_bytes([b"x"], block=True, timeout=timeout),
            "Publisher.loan": lambda: k.loan(block=True, timeout=timeout),
        })
    elif ch.pattern == "reqrep":
        calls.update({
            "Replier.recv": lambda: k.recv(timeout=timeout),
            "Replier.recv_bytes": lambda: k.recv_bytes(timeout=timeout),
            "Replier.recv_into": lambda: k.recv_into(bytearray(64), timeout=timeout),
            "Replier.reply_and_recv_bytes": lambda: k.reply_and_recv_bytes(b"", timeout=timeout),
            "Requester.request": lambda: f.request("x", timeout=timeout),
            "Requester.request_bytes": lambda: f.request_bytes(b"x", timeout=timeout),
            "Requester.send": lambda: f.send("x", timeout=timeout),
            "Requester.send_bytes": lambda: f.send_bytes(b"x", timeout=timeout),
            "Requester.recv": lambda: f.recv(timeout=timeout),
        })
    else:
        calls.update({
            "Puller.recv": lambda: f.recv(timeout=timeout),
            "Puller.recv_bytes": lambda: f.recv_bytes(timeout=timeout),
            "Puller.recv_into": lambda: f.recv_into(bytearray(64), timeout=timeout),
            "Puller.recv_many": lambda: f.recv_many(4, timeout=timeout),
            "Puller.recv_many_bytes": lambda: f.recv_many_bytes(4, timeout=timeout),
            "Pusher.send": lambda: k.send("x", timeout=timeout),
            "Pusher.send_bytes": lambda: k.send_bytes(b"x", timeout=timeout),
            "Pusher.send_many": lambda: k.send_many(["x"], timeout=timeout),
            "Pusher.send_many_bytes": lambda: k.send_many_bytes([b"x"], timeout=timeout),
        })
    return calls


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), data=st.data(), bad=BAD_TIMEOUT)
def test_every_timeout_is_checked_and_nothing_moves(channels: Callable[[str], Channel], pattern: str,
                                                    data: Any, bad: Tuple[Any, type]) -> None:
    value, builtin = bad
    ch = channels(pattern)
    calls = timeout_calls(ch, value)
    which = data.draw(st.sampled_from(sorted(calls)))
    exc = refused(calls[which], (builtin,))
    assert "timeout" in str(exc), f"{which}: {exc}"
    ch.still_waiting()


def test_a_zero_of_a_wrong_type_is_not_a_timeout(channels: Callable[[str], Channel]) -> None:
    """timeout=True is refused with SHMTypeError; so must False (and Decimal(0), 0j...) be, on every
    method, not taken for "do not wait"."""
    accepted = []
    for pattern in PATTERNS:
        for value in ZERO_OF_A_WRONG_TYPE:
            for which in sorted(timeout_calls(channels(pattern), value)):
                call = timeout_calls(channels(pattern), value)[which]  # a fresh channel for each call
                try:
                    call()
                except SHMError as exc:
                    assert isinstance(exc, TypeError) and "timeout" in str(exc), f"{which}: {exc!r}"
                else:
                    accepted.append(f"{which}(timeout={value!r})")
    assert not accepted, f"{len(accepted)} calls took a zero of a wrong type for a timeout: {accepted}"


@FEW
@given(pattern=st.sampled_from(PATTERNS), data=st.data(),
       value=st.one_of(st.floats(min_value=1e10, allow_infinity=True), st.integers(min_value=10 ** 10)))
@example(pattern="pubsub", data=None, value=math.inf)
@example(pattern="pipeline", data=None, value=1e300)
@example(pattern="reqrep", data=None, value=math.inf)
def test_a_huge_timeout_is_a_long_wait_or_a_value_error(channels: Callable[[str], Channel], pattern: str,
                                                        data: Any, value: Any) -> None:
    """With a message ready, a receive with a huge timeout (years, or infinity) returns it at once,
    or refuses the timeout with an SHMValueError; never an OverflowError."""
    ch = channels(pattern)
    receiver = ch.receiver()
    names = ["recv", "recv_bytes"] + (["latest"] if pattern == "pubsub" else [])
    which = names[0] if data is None else data.draw(st.sampled_from(names))
    try:
        got = getattr(receiver, which)(timeout=value)
    except SHMError as exc:
        assert isinstance(exc, ValueError) and "timeout" in str(exc), exc
        ch.still_waiting()
        return
    except BaseException as exc:
        raise AssertionError(f"{which}(timeout={value!r}) raised {type(exc).__name__}({exc})") from exc
    assert got in ("waiting", shmcomm.serialize.serialize("waiting")), got


def send_bytes_calls(ch: Channel, payload: Any) -> Dict[str, Callable[[], Any]]:
    k, f = ch.keeper, ch.follower
    if ch.pattern == "pubsub":
        return {"Publisher.send_bytes": lambda: k.send_bytes(payload),
                "Publisher.send_many_bytes": lambda: k.send_many_bytes([payload]),
                "Publisher.send_many_bytes(seq)": lambda: k.send_many_bytes(payload)}
    if ch.pattern == "reqrep":
        return {"Requester.send_bytes": lambda: f.send_bytes(payload, timeout=0),
                "Requester.request_bytes": lambda: f.request_bytes(payload, timeout=0),
                "Replier.send_bytes": lambda: k.send_bytes(payload),
                "Replier.reply_and_recv_bytes": lambda: k.reply_and_recv_bytes(payload, timeout=0)}
    return {"Pusher.send_bytes": lambda: k.send_bytes(payload, block=False),
            "Pusher.send_many_bytes": lambda: k.send_many_bytes([payload], block=False),
            "Pusher.send_many_bytes(seq)": lambda: k.send_many_bytes(payload, block=False)}


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), data=st.data(), payload=NOT_A_BUFFER)
def test_payloads_that_are_not_buffers_are_refused_and_nothing_is_sent(
        channels: Callable[[str], Channel], pattern: str, data: Any, payload: Any) -> None:
    ch = channels(pattern)
    calls = send_bytes_calls(ch, payload)
    which = data.draw(st.sampled_from(sorted(calls)))
    if which.endswith("(seq)") and isinstance(payload, (list, dict, str)) and len(payload) == 0:
        return  # an empty batch is valid: nothing to send
    exc = refused(calls[which], (TypeError,))
    assert "bytes" in str(exc) or "buffer" in str(exc), f"{which}: {exc}"
    ch.still_waiting()


@SETTINGS
@given(items=st.one_of(st.integers(), st.floats(), st.none(), st.booleans(), st.just(object())))
def test_send_many_refuses_a_batch_that_is_not_iterable(channels: Callable[[str], Channel], items: Any) -> None:
    ch = channels("pipeline")
    refused(lambda: ch.keeper.send_many(items, block=False), (TypeError,))
    ch.still_waiting()


@SETTINGS
@given(payloads=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=4),
       kind=st.sampled_from(["list", "tuple", "iterator", "generator", "map"]),
       pattern=st.sampled_from(["pubsub", "pipeline"]))
@example(payloads=[b"abcdefgh", b"ijklmnop"], kind="generator", pattern="pubsub")
def test_send_many_bytes_sends_exactly_what_it_is_given(channels: Callable[[str], Channel],
                                                        payloads: list, kind: str, pattern: str) -> None:
    """A batch given as a list, a tuple or a one-shot iterable: what arrives is the batch, or the call is
    refused (SHMTypeError) and nothing arrives. Never bytes that were not given (memory beyond them)."""
    ch = channels(pattern)
    ch.still_waiting()  # empty the channel first
    batch: Any = {"list": list, "tuple": tuple, "iterator": iter,
                  "generator": lambda ps: (p for p in ps), "map": lambda ps: map(bytes, ps)}[kind](payloads)
    kwargs = {"block": False} if pattern == "pipeline" else {}
    try:
        sent = ch.keeper.send_many_bytes(batch, **kwargs)
    except SHMError as exc:
        refused(lambda: (_ for _ in ()).throw(exc), (TypeError,))
        assert ch.follower.recv_bytes(timeout=0) is None
        return
    received = [ch.follower.recv_bytes(timeout=5.0) for _ in range(sent)]
    assert received == payloads, f"sent a {kind} of {payloads!r}, received {received!r}"
    assert ch.follower.recv_bytes(timeout=0) is None


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), buffer=st.one_of(
    NOT_A_BUFFER.map(lambda v: (v, TypeError)),
    st.binary(max_size=8).map(lambda v: (v, TypeError)),  # read-only
    st.builds(lambda: (memoryview(bytearray(64)).toreadonly(), TypeError)),
    st.builds(lambda: (memoryview(bytearray(128))[::2], ValueError)),  # not contiguous
    st.integers(0, 7).map(lambda n: (bytearray(n), ValueError))))  # too small for the message
def test_recv_into_checks_its_buffer_and_keeps_the_message(channels: Callable[[str], Channel], pattern: str,
                                                           buffer: Tuple[Any, type]) -> None:
    value, builtin = buffer
    ch = channels(pattern)
    refused(lambda: ch.receiver().recv_into(value, timeout=0), (builtin,))
    ch.still_waiting()


@SETTINGS
@given(pattern=st.sampled_from(["pubsub", "pipeline"]), data=st.data())
def test_max_messages_is_checked(channels: Callable[[str], Channel], pattern: str, data: Any) -> None:
    value, builtin = data.draw(bad_int(1, 1 << 20))
    ch = channels(pattern)
    method = data.draw(st.sampled_from(["recv_many", "recv_many_bytes"]))
    refused(lambda: getattr(ch.follower, method)(value, timeout=0), (builtin,))
    ch.still_waiting()


@SETTINGS
@given(data=st.data(), where=st.sampled_from(["loan", "commit"]))
def test_loan_sizes_are_checked(channels: Callable[[str], Channel], data: Any, where: str) -> None:
    ch = channels("pubsub")
    value, builtin = data.draw(bad_int(0, 64).filter(lambda vb: vb[0] is not None))  # None: all of it
    if where == "loan":
        refused(lambda: ch.keeper.loan(value), (builtin,))
    else:
        loan = ch.keeper.loan(8)
        refused(lambda: loan.commit(value), (builtin,))
        loan.cancel()
    ch.still_waiting()


def test_serve_refuses_a_handler_that_is_not_callable(channels: Callable[[str], Channel]) -> None:
    """serve(handler) with something that cannot be called: refused at once (a request is waiting, so a
    missing check shows as the builtin TypeError of calling it, not as a hang)."""
    ch = channels("reqrep")
    refused(lambda: ch.keeper.serve(42), (TypeError,))
    ch.still_waiting()


# ---- utilities -------------------------------------------------------------------------------------------

@SETTINGS
@given(name=NOT_A_STR)
def test_utilities_take_str_names(name: Any) -> None:
    refused(lambda: shmcomm.force_unlink(name), (TypeError,))
    refused(lambda: shmcomm.segment_info(name), (TypeError,))
    refused(lambda: shmcomm.os_name(name), (TypeError,))


@SETTINGS
@given(pattern=st.one_of(st.text(max_size=10).filter(lambda p: p not in PATTERNS), st.integers(), st.none(),
                         st.just(b"pubsub"), st.just(["pubsub"]), st.just({"pubsub"})))
@example(pattern=["pubsub"])
def test_os_name_checks_its_pattern(pattern: Any) -> None:
    exc = refused(lambda: shmcomm.os_name("robot/pose", pattern), (ValueError, TypeError))
    assert "pattern" in str(exc)


@SETTINGS
@given(junk=st.text(min_size=1, max_size=20))
@example(junk="\x00")
def test_force_unlink_never_removes_a_segment_it_was_not_named(channels: Callable[[str], Channel],
                                                               junk: str) -> None:
    """A name with a NUL in it must not be cut at the NUL and remove another (live) segment."""
    ch = channels("pubsub")
    live = shmcomm.os_name(ch.name)
    try:
        removed = shmcomm.force_unlink(live + "\x00" + junk)
    except SHMError as exc:
        refused(lambda: (_ for _ in ()).throw(exc), (ValueError,))
    else:
        assert removed is False
    assert os.path.exists(os.path.join(SHM_DIR, live)), "force_unlink removed the live segment"
    ch.still_waiting()


@SETTINGS
@given(os_name=st.text(max_size=40))
@example(os_name="shmcomm_x\x00y")
def test_segment_info_of_any_str_is_an_answer_or_an_shm_error(os_name: str) -> None:
    try:
        info = shmcomm.segment_info(os_name)
    except SHMError as exc:
        refused(lambda: (_ for _ in ()).throw(exc), (ValueError, TypeError))
        return
    except BaseException as exc:
        raise AssertionError(f"segment_info({os_name!r}) raised {type(exc).__name__}({exc})") from exc
    assert info == os_name and info.error is not None  # no such segment of ours


@SETTINGS
@given(data=st.one_of(st.integers(), st.floats(), st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                      st.just(object())), method=st.sampled_from(["pickle", "msgpack"]))
@example(data=5, method="pickle")
def test_deserialize_of_something_that_is_not_bytes(data: Any, method: str) -> None:
    refused(lambda: shmcomm.serialize.deserialize(data, method), (ValueError, TypeError))


@SETTINGS
@given(obj=st.one_of(st.functions(), st.just(lambda: None), st.just(iter([])), st.just(object()), st.sets(st.integers()),
                     st.complex_numbers()),
       method=st.sampled_from(["pickle", "msgpack", "raw"]))
def test_unserializable_objects_are_refused_and_nothing_is_sent(channels: Callable[[str], Channel], obj: Any,
                                                                method: str) -> None:
    try:
        shmcomm.serialize.serialize(obj, method)
    except SHMSerializationError:
        pass
    else:
        return  # serializable with this method (a set with pickle, ...): nothing to refuse
    name = unique_name("unserializable")
    with Publisher(name, serialization=method, lossless=True) as pub, \
            Subscriber(name, timeout_connect=1.0, serialization=method) as sub:
        refused(lambda: pub.send(obj), (ValueError,))
        assert sub.recv_bytes(timeout=0) is None
    no_segment(name)

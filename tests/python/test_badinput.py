"""Bad input: names, sizes, types, timeouts, serialization, oversize messages, missing channels,
corrupted segments, mismatched publishers. Each gives a clear, typed error (an SHMError, and the
matching builtin), never a crash, a hang or a leaked segment. Plus hypothesis property tests."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmcomm
from naming import NAME_PREFIX, unique_name
from procs import CTX, Children, child_env, crashing_publisher, get, join
from shmcomm import (Publisher, SHMConnectionError, SHMError, SHMMessageSizeError, SHMNameError,
                     SHMSerializationError, SHMTimeoutError, Subscriber)

HERE = Path(__file__).resolve().parent


# ---- names --------------------------------------------------------------------------------------------

INVALID_NAMES = ["", ".", "..", "a/../b", "a/./b", "../escape", "x\x00y", "line\nbreak", "tab\there",
                 "a" * 256]


@pytest.mark.parametrize("bad", INVALID_NAMES, ids=repr)
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(SHMNameError) as info:
        Publisher(bad)
    assert isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value)  # the message shows the name it refused
    with pytest.raises(SHMNameError):
        Subscriber(bad, timeout_connect=0.2)
    with pytest.raises(SHMNameError):
        shmcomm.os_name(bad)


def test_too_long_name_says_so() -> None:
    with pytest.raises(SHMNameError, match="too long"):
        Publisher("n" * 1000)


@pytest.mark.parametrize("bad", [123, None, b"bytes", ["list"], 1.5])
def test_names_must_be_str(bad: Any) -> None:
    with pytest.raises(TypeError, match="str"):
        Publisher(bad)
    with pytest.raises(TypeError, match="str"):
        Subscriber(bad, timeout_connect=0.2)


@pytest.mark.parametrize("suffix", ["robot/pose", "caméra/ñandú/日本語", "with space", "emoji/🤖",
                                    "a//b", "trailing/", "+2f", "%41", "back\\slash", "UPPER.lower-dash_"])
def test_names_with_slashes_and_unicode_work(new_channel: Callable[[str], str], suffix: str) -> None:
    name = new_channel("n") + "/" + suffix
    os_name = shmcomm.os_name(name)
    assert os_name.startswith("shmcomm_") and "/" not in os_name and os_name.isascii()
    with Publisher(name) as pub, Subscriber(name, timeout_connect=1.0) as sub:
        assert os.path.exists(os.path.join("/dev/shm", os_name))
        pub.send(suffix)
        assert sub.recv(timeout=1.0) == suffix
        assert shmcomm.segment_info(os_name).channel == name


def test_names_that_differ_only_in_escaped_characters_do_not_collide(new_channel: Callable[[str], str]) -> None:
    base = new_channel("n")
    names = [base + s for s in ["/a", "+2fa", "_a", "%2fa", "~a", "/A"]]
    assert len({shmcomm.os_name(n) for n in names}) == len(names)
    pubs = [Publisher(n) for n in names]
    try:
        for i, pub in enumerate(pubs):
            pub.send(i)
    finally:
        for pub in pubs:
            pub.close()


@pytest.mark.parametrize("length", [200, 254, 255])
def test_very_long_names_are_hashed_to_fit(new_channel: Callable[[str], str], length: int) -> None:
    base = new_channel("long") + "/"
    name = base + "x" * (length - len(base))
    twin = base + "x" * (length - len(base) - 1) + "y"  # differs in the last character only
    assert len(name) == len(twin) == length
    os_name, twin_os_name = shmcomm.os_name(name), shmcomm.os_name(twin)
    assert os_name != twin_os_name
    assert len(os_name) <= 255 and len(os_name.encode()) < len(name) + len("shmcomm_pub_")
    with Publisher(name) as pub, Subscriber(name, timeout_connect=1.0) as sub, Publisher(twin) as other:
        pub.send("long")
        other.send("twin")
        assert sub.recv(timeout=1.0) == "long"
        assert sub.recv(timeout=0) is None
        assert shmcomm.segment_info(os_name).channel == name


def test_long_unicode_name_is_hashed(new_channel: Callable[[str], str]) -> None:
    base = new_channel("u") + "/"
    name = base + "日" * ((255 - len(base)) // 3)  # 3 bytes each in UTF-8, ~9 escaped characters
    with Publisher(name) as pub, Subscriber(name, timeout_connect=1.0) as sub:
        pub.send("ok")
        assert sub.recv(timeout=1.0) == "ok"
    assert len(shmcomm.os_name(name)) <= 255


# ---- sizes, types, timeouts ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    ({"num_slots": 0}, ValueError),
    ({"num_slots": 1}, ValueError),
    ({"num_slots": -1}, ValueError),
    ({"num_slots": 2 ** 25}, ValueError),
    ({"num_slots": True}, TypeError),
    ({"num_slots": 64.0}, TypeError),
    ({"num_slots": "64"}, TypeError),
    ({"slot_size": 0}, ValueError),
    ({"slot_size": -4096}, ValueError),
    ({"slot_size": (1 << 30) + 1}, ValueError),
    ({"slot_size": 4096.0}, TypeError),
    ({"slot_size": None}, TypeError),
    ({"num_slots": 1 << 24, "slot_size": 1 << 30}, ValueError),  # 16 PiB: over the 1 TiB limit
], ids=lambda v: repr(v) if isinstance(v, dict) else v.__name__)
def test_bad_sizes_are_refused(channel: str, kwargs: dict, error: type) -> None:
    with pytest.raises(error) as info:
        Publisher(channel, **kwargs)
    key = next(iter(kwargs))
    assert key in str(info.value) or "TiB" in str(info.value), str(info.value)
    assert not os.path.exists(os.path.join("/dev/shm", shmcomm.os_name(channel)))


def test_smallest_geometry_works(channel: str) -> None:
    with Publisher(channel, num_slots=2, slot_size=1) as pub, Subscriber(channel) as sub:
        pub.send_bytes(b"x")
        assert sub.recv_bytes(timeout=1.0) == b"x"


@pytest.mark.parametrize("timeout, error", [(-1, ValueError), (-0.5, ValueError), (math.nan, ValueError),
                                            ("x", TypeError), ([1], TypeError), (True, TypeError)],
                         ids=repr)
def test_bad_timeouts_are_refused(channel: str, timeout: Any, error: type) -> None:
    with Publisher(channel, lossless=True) as pub, Subscriber(channel) as sub:
        pub.send("kept")
        for call in (lambda: sub.recv(timeout=timeout), lambda: sub.recv_bytes(timeout=timeout),
                     lambda: sub.recv_into(bytearray(64), timeout=timeout),
                     lambda: sub.recv_view(timeout=timeout),
                     lambda: pub.send("x", block=True, timeout=timeout)):
            with pytest.raises(error, match="timeout"):
                call()
        assert sub.recv(timeout=1.0) == "kept"  # nothing was consumed by the refused calls
        assert sub.recv(timeout=0) is None  # nor published
        with pytest.raises(error, match="timeout_connect"):
            Subscriber(channel, timeout_connect=timeout)


def test_oversize_message_names_slot_size(channel: str) -> None:
    with Publisher(channel, slot_size=64) as pub, Subscriber(channel) as sub:
        assert pub.send_bytes(b"x" * 64) is True  # exactly slot_size fits
        with pytest.raises(SHMMessageSizeError) as info:
            pub.send_bytes(b"x" * 65)
        assert isinstance(info.value, ValueError)
        assert "slot_size" in str(info.value) and "64" in str(info.value) and "65" in str(info.value)
        with pytest.raises(SHMMessageSizeError, match="slot_size"):
            pub.send(list(range(100)))  # a pickle larger than 64 bytes
        with pytest.raises(SHMMessageSizeError, match="slot_size"):
            pub.send_bytes(b"x" * 65, block=True, timeout=1.0)
        assert sub.recv_bytes(timeout=1.0) == b"x" * 64
        assert sub.recv_bytes(timeout=0) is None  # nothing of the refused messages


@pytest.mark.parametrize("method", ["json", "", "Pickle", None])
def test_unknown_serialization_lists_the_choices(channel: str, method: Any) -> None:
    for make in (lambda: Publisher(channel, serialization=method),
                 lambda: Subscriber(channel, timeout_connect=0.2, serialization=method)):
        with pytest.raises(SHMSerializationError) as info:
            make()
        message = str(info.value)
        assert all(choice in message for choice in ("pickle", "msgpack", "raw")), message
    with pytest.raises(SHMSerializationError):
        shmcomm.serialize.serialize(1, method)
    assert not os.path.exists(os.path.join("/dev/shm", shmcomm.os_name(channel)))


def test_subscriber_without_publisher_says_what_to_do(channel: str) -> None:
    start = time.monotonic()
    with pytest.raises(SHMConnectionError) as info:
        Subscriber(channel, timeout_connect=0.2)
    elapsed = time.monotonic() - start
    assert 0.18 <= elapsed < 3.0, elapsed
    message = str(info.value)
    assert channel in message and "0.2" in message
    assert "start the Publisher first or raise timeout_connect" in message
    assert isinstance(info.value, ConnectionError)
    start = time.monotonic()
    with pytest.raises(SHMConnectionError):
        Subscriber(channel, timeout_connect=0)
    assert time.monotonic() - start < 1.0


def test_mismatched_second_publisher_is_refused(channel: str) -> None:
    with Publisher(channel, num_slots=16, slot_size=4096) as pub:
        for kwargs in ({"num_slots": 16, "slot_size": 128}, {"num_slots": 32, "slot_size": 4096},
                       {"num_slots": 16, "slot_size": 4096, "lossless": True}):
            with pytest.raises(SHMConnectionError) as info:
                Publisher(channel, **kwargs)
            message = str(info.value)
            assert "num_slots" in message and "slot_size" in message, message
            assert channel in message
        assert pub.stats()["publishers"] == 1
        with Publisher(channel, num_slots=16, slot_size=4096) as twin:  # the same parameters join
            assert twin.stats()["publishers"] == 2


def test_mismatched_publisher_in_another_process(channel: str) -> None:
    with Publisher(channel, slot_size=4096):
        code = f"""
            import shmcomm
            try:
                shmcomm.Publisher({channel!r}, slot_size=128)
            except shmcomm.SHMConnectionError as exc:
                print("refused:", exc)
        """
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=60, env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused:") and "slot_size" in proc.stdout


# ---- every error is an SHMError -----------------------------------------------------------------------

def _bad_calls(channel: str) -> Iterator[tuple]:
    yield "num_slots=0", lambda: Publisher(channel, num_slots=0), ValueError
    yield "num_slots=True", lambda: Publisher(channel, num_slots=True), TypeError
    yield "slot_size=0", lambda: Publisher(channel, slot_size=0), ValueError
    yield "slot_size float", lambda: Publisher(channel, slot_size=1.5), TypeError
    yield "name not str", lambda: Publisher(42), TypeError
    yield "name with a lone surrogate", lambda: Publisher(channel + "\ud800"), ValueError
    yield "mode", lambda: Publisher(channel, mode=0o777), ValueError
    yield "timeout_connect=-1", lambda: Subscriber(channel, timeout_connect=-1), ValueError
    yield "timeout_connect='x'", lambda: Subscriber(channel, timeout_connect="x"), TypeError
    yield "os_name with NUL", lambda: shmcomm.os_name(channel + "\x00evil"), ValueError


CASES = [c[0] for c in _bad_calls("x")]


@pytest.mark.parametrize("case", CASES)
def test_every_error_is_an_shm_error(channel: str, case: str) -> None:
    """The reference API: "SHMError: base class for all shm_comm errors". Argument errors are
    SHMErrors too (and the builtin a Python user expects), so `except SHMError` catches them."""
    _, call, builtin = next(c for c in _bad_calls(channel) if c[0] == case)
    with pytest.raises(builtin) as info:
        call()
    assert isinstance(info.value, SHMError), (
        f"{case}: raised {type(info.value).__name__}({info.value}), which is not an SHMError")


def test_recv_timeouts_are_none_and_block_timeouts_raise(channel: str) -> None:
    with Publisher(channel, num_slots=2, slot_size=8, lossless=True) as pub, Subscriber(channel) as sub:
        assert sub.recv(timeout=0.01) is None
        pub.send_bytes(b"1")
        pub.send_bytes(b"2")
        with pytest.raises(shmcomm.SHMBufferFullError) as full:
            pub.send_bytes(b"3")
        assert isinstance(full.value, BlockingIOError) and "block=True" in str(full.value)
        with pytest.raises(SHMTimeoutError) as timed_out:
            pub.send_bytes(b"3", block=True, timeout=0.05)
        assert isinstance(timed_out.value, TimeoutError)


# ---- corrupted segments -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crashed_segment() -> Iterator[tuple]:
    """A segment whose publisher was SIGKILLed: (channel, path, its original bytes)."""
    channel = unique_name("corrupt")
    events = CTX.Queue()
    with Children() as kids:
        proc = kids.start(crashing_publisher, channel, events)
        pid = get(events, 30, "the publisher", "ready")["pid"]
        os.kill(pid, signal.SIGKILL)
        assert join(proc, 10, "killed publisher") == -signal.SIGKILL
    path = os.path.join("/dev/shm", shmcomm.os_name(channel))
    original = Path(path).read_bytes()
    yield channel, path, original
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


CORRUPTIONS = {
    "random header": lambda data: bytes(random.Random(1).getrandbits(8) for _ in range(512)) + data[512:],
    "all 0xff": lambda data: b"\xff" * len(data),
    "zeroed magic": lambda data: b"\0" * 8 + data[8:],
    "layout version 99": lambda data: data[:8] + _u32(99) + data[12:],
    "unknown pattern": lambda data: data[:12] + _u32(77) + data[16:],
    "segment_bytes huge": lambda data: data[:16] + _u64(1 << 62) + data[24:],
    "num_slots huge": lambda data: data[:48] + _u32(0xFFFFFFFF) + data[52:],
    "slot_size huge": lambda data: data[:52] + _u32(0xFFFFFFF0) + data[56:],
    "num_slots zero": lambda data: data[:48] + _u32(0) + data[52:],
    "offsets out of range": lambda data: data[:64] + _u64(1 << 50) * 3 + data[88:],
    "state garbage": lambda data: data[:128] + _u32(0xDEAD) + data[132:],
    "channel unterminated": lambda data: data[:192] + b"A" * 256 + data[448:],
    "truncated to 100 bytes": lambda data: data[:100],
    "truncated to half": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
}

CHECK_CORRUPT = """
import contextlib, io, json, sys, shmcomm
channel, os_name = sys.argv[1], sys.argv[2]
out = {}
info = shmcomm.segment_info(os_name)
out["info_error"], out["info_stale"] = info.error, info.stale
out["listed"] = os_name in shmcomm.list_segments()
out["would_clean"] = os_name in [str(s) for s in shmcomm.clean(dry_run=True)]
try:
    shmcomm.Subscriber(channel, timeout_connect=0.2)
    out["subscriber"] = "attached"
except shmcomm.SHMError as exc:
    out["subscriber"] = type(exc).__name__ + ": " + str(exc)
from shmcomm.cli import main as cli
for label, args in (("ls", ["ls"]), ("ls --json", ["ls", "--json"]), ("inspect", ["inspect", channel])):
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            out["cli " + label] = [cli(args), False]
    except Exception as exc:
        out["cli " + label] = [repr(exc), True]
try:
    with shmcomm.Publisher(channel, num_slots=8, slot_size=256) as pub, \\
         shmcomm.Subscriber(channel, timeout_connect=1.0) as sub:
        pub.send("fresh")
        out["publisher"] = "replaced: " + repr(sub.recv(timeout=1.0))
except shmcomm.SHMError as exc:
    out["publisher"] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""


CHECK_STALE = """
import sys, shmcomm
os_name = sys.argv[1]
print(shmcomm.segment_info(os_name).stale, os_name in [str(s) for s in shmcomm.clean(dry_run=True)])
"""


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupted_segment_gives_a_clean_error(crashed_segment: tuple, corruption: str) -> None:
    channel, path, original = crashed_segment
    with open(path, "wb") as f:  # as a buggy or hostile process could
        f.write(CORRUPTIONS[corruption](original))
    try:
        proc = subprocess.run([sys.executable, "-c", CHECK_CORRUPT, channel, os.path.basename(path)],
                              capture_output=True, text=True, timeout=90, env=child_env())
        assert proc.returncode == 0, f"exit {proc.returncode} (a crash is negative): {proc.stderr[-3000:]}"
        out = json.loads(proc.stdout)
    finally:
        with open(path, "wb") as f:
            f.write(original)
    assert out["listed"] is True
    # The dead publisher's segment cannot be attached (only the inspection-only channel field is
    # harmless); the error is typed and says why.
    if corruption == "channel unterminated":
        assert out["subscriber"] == "attached" or out["subscriber"].startswith("SHMConnectionError: "), out
    else:
        assert out["subscriber"].startswith("SHMConnectionError: "), out
    # Unreadable segments are reported with the reason and counted stale, so clean removes them, as
    # soon as their creator is known dead. An empty one names no creator: it could be a creation in
    # its first microseconds, so it is stale only once older than the creation grace period.
    if corruption == "empty":
        assert out["info_stale"] is False and out["would_clean"] is False, out
        past = time.time() - 60
        os.utime(path, (past, past))
        aged = subprocess.run([sys.executable, "-c", CHECK_STALE, os.path.basename(path)],
                              capture_output=True, text=True, timeout=60, env=child_env())
        assert aged.stdout.split() == ["True", "True"], (aged.stdout, aged.stderr[-2000:])
    else:
        assert out["info_stale"] is True and out["would_clean"] is True, out
    for key in ("cli ls", "cli ls --json", "cli inspect"):
        assert out[key] in ([0, False], [1, False]), (key, out[key])
    # A new Publisher either replaces the dead, broken segment or refuses it with an error that says
    # how to remove it (the segment is stale: "upgrade both" or "a live publisher uses it" would mislead).
    publisher = out["publisher"]
    assert publisher == "replaced: 'fresh'" or (
        publisher.startswith("SHMConnectionError") and ("force_unlink" in publisher or "clean" in publisher)
    ), publisher


def test_the_untouched_crashed_segment_is_consistent(crashed_segment: tuple) -> None:
    channel, path, original = crashed_segment
    assert Path(path).read_bytes() == original
    info = shmcomm.segment_info(os.path.basename(path))
    assert info.error is None and info.stale is True and info.channel == channel


@pytest.mark.timeout(180)
def test_garbage_in_a_live_segment_never_crashes_anyone(channel: str) -> None:
    """hypothesis writes garbage over a live channel's header, registry, ring control and slots; every
    call must work or raise an SHMError (see fuzz_segment.py, run in a child process)."""
    proc = subprocess.run([sys.executable, str(HERE / "fuzz_segment.py"), channel, "400", "12345"],
                          capture_output=True, text=True, timeout=170, env=child_env())
    assert proc.returncode == 0, f"exit {proc.returncode} (a crash is negative):\n{proc.stderr[-5000:]}"
    result = json.loads(proc.stdout.splitlines()[-1])
    outcomes = result["outcomes"]
    assert outcomes.get("attach: ok", 0) > 0 and outcomes.get("attach: SHMConnectionError", 0) > 0, outcomes
    assert result["segment_left"] is False


# ---- hypothesis properties -----------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(suffix=st.text(max_size=120))
def test_property_any_name_is_accepted_or_refused_with_shm_name_error(suffix: str) -> None:
    name = unique_name("prop") + "/" + suffix
    try:
        os_name = shmcomm.os_name(name)
    except SHMNameError:
        os_name = None
    if os_name is None:
        with pytest.raises(SHMNameError):
            Publisher(name)
        return
    assert os_name.startswith("shmcomm_pub_") and "/" not in os_name and "\0" not in os_name
    assert os_name.isascii() and len(os_name) <= 255
    with Publisher(name, num_slots=2, slot_size=16) as pub:
        assert os.path.exists(os.path.join("/dev/shm", os_name))
        assert shmcomm.segment_info(os_name).channel == name
        with Subscriber(name, timeout_connect=0) as sub:
            pub.send_bytes(b"ok")
            assert sub.recv_bytes(timeout=1.0) == b"ok"


@PROPERTY_SETTINGS
@given(a=st.text(min_size=1, max_size=60), b=st.text(min_size=1, max_size=60))
def test_property_distinct_names_get_distinct_os_names(a: str, b: str) -> None:
    try:
        name_a, name_b = shmcomm.os_name(NAME_PREFIX + a), shmcomm.os_name(NAME_PREFIX + b)
    except SHMNameError:
        return
    assert (name_a == name_b) == (a == b)


@PROPERTY_SETTINGS
@given(payloads=st.lists(st.binary(max_size=300), max_size=40))
def test_property_payloads_arrive_intact_and_in_order(payloads: list) -> None:
    name = unique_name("payloads")
    with Publisher(name, num_slots=64, slot_size=300, serialization="raw") as pub, \
            Subscriber(name, timeout_connect=0, serialization="raw") as sub:
        for payload in payloads:
            assert pub.send_bytes(payload) is True
        received = [sub.recv_bytes(timeout=1.0) for _ in payloads]
        assert received == payloads
        assert sub.recv_bytes(timeout=0) is None


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20)


@PROPERTY_SETTINGS
@given(obj=JSONISH, method=st.sampled_from(["pickle", "msgpack"]))
def test_property_serialization_round_trips(obj: Any, method: str) -> None:
    data = shmcomm.serialize.serialize(obj, method)
    assert isinstance(data, bytes)
    assert shmcomm.serialize.deserialize(data, method) == obj


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=64))
def test_property_garbage_bytes_never_deserialize_to_a_crash(data: bytes) -> None:
    for method in ("pickle", "msgpack"):
        try:
            shmcomm.serialize.deserialize(data, method)
        except SHMSerializationError:
            pass


def test_pickle_payload_size_matches_send(channel: str) -> None:
    with Publisher(channel, slot_size=4096) as pub, Subscriber(channel) as sub:
        pub.send({"k": "v"})
        assert sub.recv_bytes(timeout=1.0) == pickle.dumps({"k": "v"}, protocol=pickle.HIGHEST_PROTOCOL)

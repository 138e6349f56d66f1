"""Segments on the machine: listing, stale detection after a crash, force_unlink, clean (API and
command line), replacement of a stale segment, unlinking on close, permissions, a full /dev/shm."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

import shmcomm
from procs import CTX, Children, as_nobody, child_env, crashing_publisher, get, join, live_publisher
from shmcomm import Publisher, SHMError, SHMNoSpaceError, SHMPermissionError, Subscriber

SHM_DIR = "/dev/shm"


def path_of(name: str) -> str:
    return os.path.join(SHM_DIR, shmcomm.os_name(name))


def crash_a_publisher(kids: Children, channel: str, **kwargs: int) -> int:
    """Starts a publisher process for ``channel``, SIGKILLs it, reaps it; returns its pid."""
    events = CTX.Queue()
    proc = kids.start(crashing_publisher, channel, events, **kwargs)
    pid = get(events, 30, "the publisher to start", "ready")["pid"]
    os.kill(pid, signal.SIGKILL)
    assert join(proc, 10, "killed publisher") == -signal.SIGKILL
    return pid


def listed(os_name: str) -> shmcomm.SegmentInfo:
    matches = [s for s in shmcomm.list_segments() if s == os_name]
    assert len(matches) == 1, f"{os_name} listed {len(matches)} times"
    return matches[0]


def shmcomm_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shmcomm", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_list_segments_returns_os_names_with_details(channel: str) -> None:
    with Publisher(channel, num_slots=8, slot_size=128) as pub, Subscriber(channel):
        segments = shmcomm.list_segments()
        assert isinstance(segments, list)
        assert all(isinstance(s, str) and s.startswith("shmcomm_") for s in segments)
        info = listed(shmcomm.os_name(channel))
        assert info.channel == channel and info.pattern == "pubsub"
        assert info.stale is False and info.error is None and info.state == "ready"
        assert info.creator_pid == os.getpid() and info.creator_alive is True
        assert info.publishers == 1 and info.subscribers == 1
        assert info.num_slots == 8 and info.slot_size == 128
        assert info.size_bytes == os.stat(path_of(channel)).st_size
        pub.send(1)
        assert shmcomm.segment_info(shmcomm.os_name(channel)).head == 1
        assert info.as_dict()["os_name"] == shmcomm.os_name(channel)
    assert shmcomm.os_name(channel) not in shmcomm.list_segments()


def test_crashed_publisher_leaves_a_stale_segment_that_force_unlink_removes(channel: str) -> None:
    with Children() as kids:
        pid = crash_a_publisher(kids, channel)
    name = shmcomm.os_name(channel)
    info = listed(name)
    assert info.stale is True
    assert info.creator_pid == pid and info.creator_alive is False
    assert info.publishers == 0 and info.channel == channel
    assert shmcomm.force_unlink(name) is True
    assert not os.path.exists(path_of(channel))
    assert shmcomm.force_unlink(name) is False
    assert name not in shmcomm.list_segments()


def test_force_unlink_refuses_names_that_are_not_shmcomm_segments() -> None:
    with pytest.raises(ValueError):
        shmcomm.force_unlink("not_ours")
    with pytest.raises(TypeError):
        shmcomm.force_unlink(None)  # type: ignore[arg-type]
    with pytest.raises((ValueError, SHMError)):
        shmcomm.force_unlink("shmcomm_../../etc/passwd")
    assert os.path.exists("/etc/passwd")


def test_clean_dry_run_lists_stale_segments_and_removes_nothing(channel: str) -> None:
    with Children() as kids:
        pid = crash_a_publisher(kids, channel)
    name = shmcomm.os_name(channel)
    try:
        proc = shmcomm_cli("clean", "--dry-run")
        assert proc.returncode == 0, proc.stderr
        line = [l for l in proc.stdout.splitlines() if name in l]
        assert line and "would remove" in line[0] and str(pid) in line[0], proc.stdout
        assert os.path.exists(path_of(channel))
        assert name in [str(s) for s in shmcomm.clean(dry_run=True)]
        assert os.path.exists(path_of(channel))
    finally:
        shmcomm.force_unlink(name)


def test_clean_removes_stale_segments_but_never_a_live_one(new_channel) -> None:
    stale_channel, live_channel = new_channel("stale"), new_channel("live")
    events, stop = CTX.Queue(), CTX.Event()
    with Children() as kids:
        crash_a_publisher(kids, stale_channel)
        live = kids.start(live_publisher, live_channel, events, stop)
        live_pid = get(events, 30, "the live publisher", "ready")["pid"]
        assert listed(shmcomm.os_name(stale_channel)).stale is True
        assert listed(shmcomm.os_name(live_channel)).stale is False
        proc = shmcomm_cli("clean")
        assert proc.returncode == 0, proc.stderr
        assert shmcomm.os_name(stale_channel) in proc.stdout
        assert shmcomm.os_name(live_channel) not in proc.stdout
        assert not os.path.exists(path_of(stale_channel))
        assert os.path.exists(path_of(live_channel))
        # the live channel still works, from a third process's point of view: this one
        with Subscriber(live_channel, timeout_connect=5.0) as sub:
            assert sub.publisher_alive
        assert listed(shmcomm.os_name(live_channel)).creator_pid == live_pid
        # the API does the same
        assert shmcomm.os_name(live_channel) not in [str(s) for s in shmcomm.clean()]
        assert os.path.exists(path_of(live_channel))
        stop.set()
        assert join(live, 20, "live publisher") == 0
    assert not os.path.exists(path_of(live_channel))


def test_a_new_publisher_replaces_a_stale_segment(channel: str) -> None:
    with Children() as kids:
        old_pid = crash_a_publisher(kids, channel, num_slots=8, slot_size=256)
    assert listed(shmcomm.os_name(channel)).stale is True
    # Other geometry on purpose: a stale segment is replaced, not joined.
    with Publisher(channel, num_slots=16, slot_size=512) as pub:
        info = listed(shmcomm.os_name(channel))
        assert info.stale is False and info.creator_pid == os.getpid() != old_pid
        assert info.num_slots == 16 and info.slot_size == 512 and info.head == 0
        with Subscriber(channel, timeout_connect=2.0) as sub:
            pub.send("new session")
            assert sub.recv(timeout=1.0) == "new session"
            assert sub.recv(timeout=0) is None  # nothing of the dead generation
            assert sub.stats()["slot_size"] == 512


def test_publisher_close_unlinks_its_segment(channel: str) -> None:
    pub = Publisher(channel)
    assert os.path.exists(path_of(channel))
    pub.close()
    assert not os.path.exists(path_of(channel))


def test_last_publisher_to_leave_unlinks(channel: str) -> None:
    first = Publisher(channel)
    second = Publisher(channel)  # joins
    assert first.stats()["publishers"] == 2
    first.close()
    assert os.path.exists(path_of(channel))
    second.close()
    assert not os.path.exists(path_of(channel))


def test_segment_unlinked_at_interpreter_exit_even_if_not_closed(channel: str) -> None:
    code = f"import shmcomm; pub = shmcomm.Publisher({channel!r}); print('created', flush=True)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=child_env())
    assert proc.returncode == 0 and "created" in proc.stdout, proc.stderr
    assert not os.path.exists(path_of(channel))


@pytest.mark.parametrize("mode", [None, 0o600, 0o660, 0o666])
def test_segment_permissions(channel: str, mode) -> None:
    old_umask = os.umask(0o022)  # a usual umask must not narrow an explicit mode
    try:
        pub = Publisher(channel) if mode is None else Publisher(channel, mode=mode)
    finally:
        os.umask(old_umask)
    with pub:
        assert stat.S_IMODE(os.stat(path_of(channel)).st_mode) == (mode or 0o600)


def test_invalid_mode_is_refused(channel: str) -> None:
    with pytest.raises(ValueError, match="mode"):
        Publisher(channel, mode=0o777)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user (uid 65534)")
@pytest.mark.parametrize("what", ["subscriber", "publisher"])
def test_another_user_cannot_open_a_private_channel(channel: str, what: str) -> None:
    events = CTX.Queue()
    with Publisher(channel) as pub, Children() as kids:
        proc = kids.start(as_nobody, channel, what, events)
        result = get(events, 30, "the other user's attempt", "result")
        assert join(proc, 20, "other user") == 0
        assert pub.stats()["subscribers"] == 0 and pub.stats()["publishers"] == 1
    assert result["ok"] is False, result
    assert result["type"] == "SHMPermissionError", result
    assert {"SHMConnectionError", "SHMError", "PermissionError"} <= set(result["mro"])
    assert issubclass(SHMPermissionError, PermissionError)
    assert "ermission" in result["message"] and channel in result["message"], result["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user (uid 65534)")
def test_another_user_can_subscribe_to_a_channel_shared_with_everyone(channel: str) -> None:
    events = CTX.Queue()
    with Publisher(channel, mode=0o666, lossless=True) as pub, Children() as kids:
        proc = kids.start(as_nobody, channel, "subscriber", events)
        get(events, 30, "the other user's subscriber to attach", "attached")
        assert pub.stats()["subscribers"] == 1
        pub.send("shared")
        result = get(events, 30, "the other user's subscriber", "result")
        assert join(proc, 20, "other user") == 0
    assert result == {"kind": "result", "ok": True, "message": "shared"}


def test_no_room_in_dev_shm_fails_cleanly(channel: str) -> None:
    """A segment larger than the whole /dev/shm fails at creation with SHMNoSpaceError naming
    /dev/shm, not with SIGBUS later, and leaves nothing behind. Run in a child so a SIGBUS would
    be seen as such."""
    vfs = os.statvfs(SHM_DIR)
    total = vfs.f_blocks * vfs.f_frsize
    slot_size = 1 << 30
    num_slots = total // slot_size + 2  # more than the filesystem's size: refused at once
    assert num_slots * slot_size <= 1 << 40, "this /dev/shm is larger than the 1 TiB segment limit"
    code = f"""
        import shmcomm
        try:
            pub = shmcomm.Publisher({channel!r}, num_slots={num_slots}, slot_size={slot_size})
        except shmcomm.SHMNoSpaceError as exc:
            print("SHMNoSpaceError:", exc)
        else:
            pub.send_bytes(b"x" * 100)
            print("created a segment that does not fit")
    """
    proc = subprocess.run([sys.executable, "-c", __import__("textwrap").dedent(code)], capture_output=True,
                          text=True, timeout=120, env=child_env())
    assert proc.returncode == 0, f"exit {proc.returncode} (SIGBUS is {-signal.SIGBUS}): {proc.stderr}"
    assert proc.stdout.startswith("SHMNoSpaceError:"), proc.stdout + proc.stderr
    assert "/dev/shm" in proc.stdout
    assert not os.path.exists(path_of(channel))
    assert issubclass(SHMNoSpaceError, shmcomm.SHMConnectionError)

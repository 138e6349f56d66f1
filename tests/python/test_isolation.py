"""Isolation between users and from the rest of the machine (DESIGN rules 4, 5 and 7), for every
pattern: segments are private (0600) by default; another user cannot attach to them and gets an
SHMPermissionError that says what to do; mode=0o660 shares a channel with a group and mode=0o666
with everyone; names cannot escape the ``shmcomm_`` namespace; a full /dev/shm fails at creation
with SHMNoSpaceError (never a SIGBUS later).

The other users are real processes: a child interpreter that drops root (setgroups/setgid/setuid)
before it touches the channel. The full /dev/shm is a real small tmpfs mounted over /dev/shm in a
private mount namespace (``unshare --mount``). Both need root, which is how these tests run (and CI);
as another user they fail with a message saying so, they are never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

import shmcomm
from procs import child_env
from shmcomm import (Publisher, Puller, Pusher, Replier, Requester, SHMNameError, SHMNoSpaceError,
                     SHMPermissionError, Subscriber)

SHM_DIR = "/dev/shm"
NOBODY = 65534
OTHER_UID = 40123  # a second unprivileged user, with no entry in /etc/passwd (the kernel does not care)
SHARED_GID = 47321  # a group made up for the test: the creator's group, and a supplementary group of the peer
OTHER_GID = 47322  # a group that is not the channel's

PATTERNS = ["pubsub", "reqrep", "pipeline"]
KEEPERS = {"pubsub": Publisher, "reqrep": Replier, "pipeline": Pusher}
FOLLOWERS = {"pubsub": Subscriber, "reqrep": Requester, "pipeline": Puller}


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test switches to other users (setuid/setgid) and mounts a tmpfs: run the tests "
                    "as root (as CI does), e.g. in a container", pytrace=False)


def path_of(name: str, pattern: str) -> str:
    return os.path.join(SHM_DIR, shmcomm.os_name(name, pattern))


def keeper(pattern: str, name: str, mode: int = 0o600) -> Any:
    return KEEPERS[pattern](name, num_slots=8, slot_size=256, mode=mode)


# ---- the other user: a child interpreter that drops root first --------------------------------------

AS_USER = r"""
import json, os, sys
import shmcomm

pattern, name, role, uid, gid, groups = sys.argv[1:7]
groups = [int(g) for g in groups.split(",") if g]
os.setgroups(groups)
os.setgid(int(gid))
os.setuid(int(uid))
assert os.geteuid() == int(uid) and os.getegid() == int(gid) and set(os.getgroups()) <= set(groups) | {int(gid)}

def report(**kw):
    print(json.dumps(kw), flush=True)

keepers = {"pubsub": shmcomm.Publisher, "reqrep": shmcomm.Replier, "pipeline": shmcomm.Pusher}
followers = {"pubsub": shmcomm.Subscriber, "reqrep": shmcomm.Requester, "pipeline": shmcomm.Puller}
try:
    if role == "keeper":
        mode = int(sys.argv[7], 8)
        with keepers[pattern](name, num_slots=8, slot_size=256, mode=mode) as ep:
            stats = ep.stats()
            joined = stats.get("publishers", stats.get("repliers", stats.get("pushers")))
            report(ok=True, joined=joined)
    else:
        with followers[pattern](name, timeout_connect=2.0) as ep:
            if pattern == "pubsub":
                message = ep.recv(timeout=30.0)  # the parent publishes once it sees us attached
            elif pattern == "reqrep":
                message = ep.request("ping from uid %d" % os.getuid(), timeout=30.0)
            else:
                message = ep.recv(timeout=30.0)  # queued before we started
            report(ok=True, message=message)
except Exception as exc:
    report(ok=False, type=type(exc).__name__, mro=[c.__name__ for c in type(exc).__mro__],
           message=str(exc), code=getattr(exc, "code", None))
"""


def start_as_user(pattern: str, name: str, role: str, uid: int, gid: int, groups: List[int],
                  mode: int = 0o600) -> subprocess.Popen:
    argv = [sys.executable, "-c", AS_USER, pattern, name, role, str(uid), str(gid),
            ",".join(map(str, groups)), oct(mode)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())


def finish(proc: subprocess.Popen, timeout: float = 60) -> Dict[str, Any]:
    """The child's report (its last stdout line), once it has exited with status 0."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the other user's process did not finish within {timeout} s:\n{out}\n{err}")
    assert proc.returncode == 0, f"the other user's process failed (exit {proc.returncode}):\n{out}\n{err}"
    lines = [l for l in out.splitlines() if l.startswith("{")]
    assert lines, f"no report from the other user's process:\n{out}\n{err}"
    return json.loads(lines[-1])


def serve_follower(pattern: str, ep: Any, proc: subprocess.Popen) -> None:
    """The keeper's half of the exchange with a follower in ``proc`` (which may fail to attach: then
    this returns as soon as the child exits, without waiting out a timeout)."""
    deadline = time.monotonic() + 30
    if pattern == "pubsub":
        while ep.stats()["subscribers"] < 1:
            if proc.poll() is not None or time.monotonic() > deadline:
                return
            time.sleep(0.005)
        ep.send("hello other user")
    elif pattern == "reqrep":
        while time.monotonic() < deadline:
            request = ep.recv(timeout=0.1)
            if request is not None:
                ep.send(("reply", request))
                return
            if proc.poll() is not None:
                return


def exchange(pattern: str, ep: Any, proc: subprocess.Popen) -> Dict[str, Any]:
    serve_follower(pattern, ep, proc)
    return finish(proc)


def expected_message(pattern: str, uid: int) -> Any:
    return {"pubsub": "hello other user", "reqrep": ["reply", f"ping from uid {uid}"],
            "pipeline": "queued for the other user"}[pattern]


def prime(pattern: str, ep: Any) -> None:
    if pattern == "pipeline":
        ep.send("queued for the other user")


def assert_permission_error(result: Dict[str, Any], name: str) -> None:
    assert result["ok"] is False, f"the other user could open a private channel: {result}"
    assert result["type"] == "SHMPermissionError", result
    assert {"SHMConnectionError", "SHMError", "PermissionError"} <= set(result["mro"]), result
    message = result["message"]
    assert name in message and "ermission" in message, message
    assert "another user" in message, message


# ---- private by default ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_channel_is_private_by_default_whatever_the_umask(new_channel: Callable[[str], str],
                                                            pattern: str) -> None:
    name = new_channel(pattern)
    old = os.umask(0)  # the most permissive umask must not widen the default
    try:
        ep = KEEPERS[pattern](name)
    finally:
        os.umask(old)
    with ep:
        st = os.stat(path_of(name, pattern))
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert st.st_uid == os.geteuid()
        assert stat.S_ISREG(st.st_mode)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("mode", [0o660, 0o666])
def test_explicit_sharing_modes_are_exact_whatever_the_umask(new_channel: Callable[[str], str],
                                                             pattern: str, mode: int) -> None:
    name = new_channel(pattern)
    old = os.umask(0o077)  # a strict umask must not narrow an explicit option
    try:
        ep = KEEPERS[pattern](name, mode=mode)
    finally:
        os.umask(old)
    with ep:
        assert stat.S_IMODE(os.stat(path_of(name, pattern)).st_mode) == mode


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("role", ["follower", "keeper"])
def test_another_user_cannot_open_a_private_channel(new_channel: Callable[[str], str], pattern: str,
                                                    role: str) -> None:
    need_root()
    name = new_channel(pattern)
    with keeper(pattern, name) as ep:
        assert stat.S_IMODE(os.stat(path_of(name, pattern)).st_mode) == 0o600
        result = finish(start_as_user(pattern, name, role, NOBODY, NOBODY, []))
        stats = ep.stats()
    assert_permission_error(result, name)
    # What to do, in the terms of the Python API (a Python user has no SHMC_SHARE_GROUP flag to set):
    # the keepers say "run as that user, or have it created with mode=0o660 and share a group".
    assert "mode=0o660" in result["message"], f"the message does not say how to share: {result['message']}"
    # The refused process left no trace: not registered as a peer, nor as a second keeper.
    assert stats.get("subscribers", stats.get("requesters", stats.get("pullers"))) == 0, stats
    assert stats.get("publishers", stats.get("repliers", stats.get("pushers"))) == 1, stats
    assert not os.path.exists(path_of(name, pattern))


# ---- sharing with a group ------------------------------------------------------------------------------

def keeper_in_group(pattern: str, name: str, gid: int, mode: int) -> Any:
    """A keeper created by this (root) process with effective group ``gid``, so its segment belongs to
    that group, as it would for a user whose primary group is ``gid``."""
    os.setegid(gid)
    try:
        return keeper(pattern, name, mode=mode)
    finally:
        os.setegid(0)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_group_channel_is_open_to_a_user_of_that_group(new_channel: Callable[[str], str],
                                                         pattern: str) -> None:
    need_root()
    name = new_channel(pattern)
    with keeper_in_group(pattern, name, SHARED_GID, 0o660) as ep:
        st = os.stat(path_of(name, pattern))
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == SHARED_GID, (oct(st.st_mode), st.st_gid)
        prime(pattern, ep)
        # Another user, whose primary group is not the channel's, but who is in it as a supplementary group.
        result = exchange(pattern, ep, start_as_user(pattern, name, "follower", OTHER_UID, OTHER_GID,
                                                     [SHARED_GID]))
        assert result == {"ok": True, "message": expected_message(pattern, OTHER_UID)}, result
        # ... and may join as one more keeper of the same geometry.
        joined = finish(start_as_user(pattern, name, "keeper", OTHER_UID, OTHER_GID, [SHARED_GID], 0o660))
        assert joined == {"ok": True, "joined": 2}, joined
        assert os.path.exists(path_of(name, pattern))  # the second keeper's exit does not unlink
    assert not os.path.exists(path_of(name, pattern))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_group_channel_stays_closed_to_users_outside_the_group(new_channel: Callable[[str], str],
                                                                 pattern: str) -> None:
    need_root()
    name = new_channel(pattern)
    with keeper_in_group(pattern, name, SHARED_GID, 0o660):
        result = finish(start_as_user(pattern, name, "follower", OTHER_UID, OTHER_GID, [OTHER_GID]))
    assert_permission_error(result, name)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_private_channel_stays_closed_even_to_its_group(new_channel: Callable[[str], str],
                                                          pattern: str) -> None:
    need_root()
    name = new_channel(pattern)
    with keeper_in_group(pattern, name, SHARED_GID, 0o600):
        assert os.stat(path_of(name, pattern)).st_gid == SHARED_GID
        result = finish(start_as_user(pattern, name, "follower", OTHER_UID, SHARED_GID, [SHARED_GID]))
    assert_permission_error(result, name)


# ---- sharing with everyone -----------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_world_channel_is_open_to_anyone(new_channel: Callable[[str], str], pattern: str) -> None:
    need_root()
    name = new_channel(pattern)
    with keeper(pattern, name, mode=0o666) as ep:
        assert stat.S_IMODE(os.stat(path_of(name, pattern)).st_mode) == 0o666
        prime(pattern, ep)
        result = exchange(pattern, ep, start_as_user(pattern, name, "follower", NOBODY, NOBODY, []))
        assert result == {"ok": True, "message": expected_message(pattern, NOBODY)}, result
        joined = finish(start_as_user(pattern, name, "keeper", NOBODY, NOBODY, [], 0o666))
        assert joined == {"ok": True, "joined": 2}, joined
    assert not os.path.exists(path_of(name, pattern))


# ---- names stay inside the namespace -------------------------------------------------------------------

ESCAPING_NAMES = ["..", "../x", "a/../b", "a/..", "./a", ".", "", "\x00", "a\x00/../../etc/passwd",
                  "../../../../etc/passwd", "x" * 256, "x" * 100_000, "é" * 200]


def _open_calls(pattern: str, name: str) -> List[Callable[[], Any]]:
    return [lambda: KEEPERS[pattern](name), lambda: FOLLOWERS[pattern](name, timeout_connect=0),
            lambda: shmcomm.os_name(name, pattern)]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("bad", ESCAPING_NAMES, ids=lambda n: repr(n[:12]) + f"[{len(n)}]")
def test_names_that_could_escape_the_namespace_are_refused(pattern: str, bad: str) -> None:
    before = {n for n in os.listdir(SHM_DIR) if not n.startswith("shmcomm_")}
    for call in _open_calls(pattern, bad):
        with pytest.raises(SHMNameError) as info:
            call()
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert message and "name" in message, message
    # Nothing outside the namespace (other processes' shmcomm_ segments may come and go meanwhile),
    # and no segment of this name inside it.
    assert {n for n in os.listdir(SHM_DIR) if not n.startswith("shmcomm_")} <= before
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith("shmcomm_")
                and shmcomm.segment_info(n).channel == bad]
    assert not os.path.exists("/dev/shm/x") and not os.path.exists("/dev/x")


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("suffix", ["/", "//", "/../", "a/./", "%2e%2e", "+2e+2e", ".hidden", "..."])
def test_slashes_and_dots_that_are_not_components_stay_inside_the_namespace(
        new_channel: Callable[[str], str], pattern: str, suffix: str) -> None:
    """Separators and dots inside a component are escaped, never interpreted: the segment is a plain
    file directly in /dev/shm with the shmcomm_ prefix."""
    name = new_channel("n") + suffix
    try:
        os_name = shmcomm.os_name(name, pattern)
    except SHMNameError:
        assert "/../" in suffix or "/./" in suffix, f"{name!r} refused"
        return
    assert "/" not in os_name and "\0" not in os_name and os_name.startswith("shmcomm_")
    assert os_name not in (".", "..")
    with keeper(pattern, name):
        assert os.path.isfile(os.path.join(SHM_DIR, os_name))
        assert shmcomm.segment_info(os_name).channel == name


def test_a_bare_slash_is_a_name_inside_the_namespace() -> None:
    """'/' (and '//') cannot escape: each maps to an escaped OS name in /dev/shm."""
    for pattern in PATTERNS:
        for name in ("/", "//"):
            os_name = shmcomm.os_name(name, pattern)
            assert os_name.startswith("shmcomm_") and "/" not in os_name, os_name


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("length", [180, 255])
def test_long_valid_names_are_hashed_to_fit(new_channel: Callable[[str], str], pattern: str,
                                            length: int) -> None:
    base = new_channel("long") + "/"
    name = base + "q" * (length - len(base))
    twin = name[:-1] + "r"
    os_name, twin_os_name = shmcomm.os_name(name, pattern), shmcomm.os_name(twin, pattern)
    assert os_name != twin_os_name
    assert len(os_name) <= 255 and "/" not in os_name and os_name.startswith("shmcomm_")
    with keeper(pattern, name) as ep, keeper(pattern, twin):
        assert os.path.isfile(os.path.join(SHM_DIR, os_name))
        assert shmcomm.segment_info(os_name).channel == name
        with FOLLOWERS[pattern](name, timeout_connect=1.0) as follower:
            if pattern == "pubsub":
                ep.send("long")
                assert follower.recv(timeout=5.0) == "long"
            elif pattern == "pipeline":
                ep.send("long")
                assert follower.recv(timeout=5.0) == "long"
            else:
                follower.send("long")
                assert ep.recv(timeout=5.0) == "long"
                ep.send("reply")
                assert follower.recv(timeout=5.0) == "reply"


# ---- a full /dev/shm ------------------------------------------------------------------------------------

TMPFS_BYTES = 256 * 1024

IN_SMALL_SHM = r"""
import json, os, sys
import shmcomm

pattern, name = sys.argv[1], sys.argv[2]
keepers = {"pubsub": shmcomm.Publisher, "reqrep": shmcomm.Replier, "pipeline": shmcomm.Pusher}
followers = {"pubsub": shmcomm.Subscriber, "reqrep": shmcomm.Requester, "pipeline": shmcomm.Puller}
vfs = os.statvfs("/dev/shm")
out = {"shm_total": vfs.f_blocks * vfs.f_frsize, "shm_entries": sorted(os.listdir("/dev/shm"))}

def attempt(key, make):
    try:
        ep = make()
    except Exception as exc:
        out[key] = {"ok": False, "type": type(exc).__name__, "message": str(exc),
                    "mro": [c.__name__ for c in type(exc).__mro__]}
        return None
    out[key] = {"ok": True}
    return ep

def use(ep, key):
    # Touch every byte a message can use: a segment whose pages were not reserved would SIGBUS here.
    slot = ep.slot_size
    with followers[pattern](ep.name, timeout_connect=1.0) as f:
        for i in range(ep.num_slots):
            if pattern == "reqrep":
                f.send_bytes(bytes([i % 251]) * slot, timeout=5.0)
                ep.recv_bytes(timeout=5.0)
                ep.send_bytes(b"r" * slot)
                f.recv_bytes(timeout=5.0)
            else:
                ep.send_bytes(bytes([i % 251]) * slot)
                f.recv_bytes(timeout=5.0)
    out[key]["used"] = True

# 1. far larger than the filesystem: refused at once
attempt("huge", lambda: keepers[pattern](name + "/huge", num_slots=64, slot_size=64 * 1024, max_peers=4))
# 2. fits: works
small = attempt("small", lambda: keepers[pattern](name + "/small", num_slots=8, slot_size=1024, max_peers=4))
if small is not None:
    use(small, "small")
# (max_peers=4: a Replier reserves a reply slot per peer)
# 3. fits the filesystem's size, but not what is left of it beside (4): refused at creation, not
#    with a SIGBUS when its pages are first written
first = attempt("first", lambda: keepers[pattern](name + "/first", num_slots=16, slot_size=8 * 1024, max_peers=4))
if first is not None:
    use(first, "first")
second = attempt("second", lambda: keepers[pattern](name + "/second", num_slots=16, slot_size=8 * 1024, max_peers=4))
if second is not None:
    use(second, "second")
out["left_after_failures"] = sorted(n for n in os.listdir("/dev/shm") if n.startswith("shmcomm_"))
for ep in (small, first, second):
    if ep is not None:
        ep.close()
out["left_at_end"] = sorted(os.listdir("/dev/shm"))
print(json.dumps(out), flush=True)
"""


def run_in_small_dev_shm(code: str, *args: str) -> subprocess.CompletedProcess:
    """Runs ``python -c code args`` in a private mount namespace whose /dev/shm is a fresh tmpfs of
    TMPFS_BYTES; fails the test with a clear message if the namespace or the mount is refused."""
    need_root()
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("the full-/dev/shm test needs unshare(1) (util-linux): install it", pytrace=False)
    script = ('mount -t tmpfs -o size=%d,mode=1777 shmcomm-test /dev/shm || exit 97; echo MOUNTED; '
              'exec "$@"' % TMPFS_BYTES)
    argv = [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            sys.executable, "-c", code, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=child_env())
    if not proc.stdout.startswith("MOUNTED"):
        pytest.fail(f"cannot make a private /dev/shm (unshare --mount + mount -t tmpfs were refused, exit "
                    f"{proc.returncode}): this test needs root with CAP_SYS_ADMIN (in Docker: --privileged "
                    f"or --cap-add SYS_ADMIN).\n{proc.stderr[-3000:]}", pytrace=False)
    return proc


def assert_no_space(result: Dict[str, Any], what: str) -> None:
    assert result["ok"] is False, f"{what}: created a segment that does not fit /dev/shm: {result}"
    assert result["type"] == "SHMNoSpaceError", result
    assert {"SHMConnectionError", "SHMError"} <= set(result["mro"]), result
    message = result["message"]
    assert "/dev/shm" in message, message
    assert "--shm-size" in message, message  # the fix, for the commonest case (Docker's 64 MB)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_full_dev_shm_fails_at_creation_never_with_sigbus(new_channel: Callable[[str], str],
                                                            pattern: str) -> None:
    name = new_channel(pattern)
    proc = run_in_small_dev_shm(IN_SMALL_SHM, pattern, name)
    assert proc.returncode == 0, (f"exit {proc.returncode} (SIGBUS is {-signal.SIGBUS}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["shm_total"] == TMPFS_BYTES and out["shm_entries"] == [], out  # really the small tmpfs
    assert_no_space(out["huge"], "64 x 64 KiB in 256 KiB")
    assert out["small"] == {"ok": True, "used": True}, out["small"]
    assert out["first"] == {"ok": True, "used": True}, out["first"]
    assert_no_space(out["second"], "a second 16 x 8 KiB channel beside the first")
    # The refused creations left nothing behind; the channels that fitted are gone once closed.
    assert len(out["left_after_failures"]) == 2, out["left_after_failures"]
    assert out["left_at_end"] == [], out["left_at_end"]
    # The outer /dev/shm never saw any of it.
    for suffix in ("/huge", "/small", "/first", "/second"):
        assert not os.path.exists(path_of(name + suffix, pattern))

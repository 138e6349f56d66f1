"""Finding, inspecting and removing shmcomm segments: ``list_segments()``, ``segment_info()``,
``force_unlink()`` and ``clean()`` (what ``python -m shmcomm ls/clean`` use)."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

from . import _binding as b
from ._endpoint import check_name
from .errors import SHMTypeError, SHMValueError
from .log import logger

ffi, lib = b.ffi, b.lib

SHM_DIR = "/dev/shm"
PREFIX = "shmcomm_"
_PATTERNS = {lib.SHMC_PATTERN_PUBSUB: "pubsub", lib.SHMC_PATTERN_REQREP: "reqrep",
             lib.SHMC_PATTERN_PIPELINE: "pipeline", lib.SHMC_PATTERN_PAIR_M2S: "pair-m2s",
             lib.SHMC_PATTERN_PAIR_S2M: "pair-s2m", lib.SHMC_PATTERN_STREAM: "stream"}
_STATES = {1: "ready", 2: "closed", 3: "replaced"}


_CREATION_GRACE_S = 10.0


def _age_seconds(os_name: str) -> float:
    import time

    try:
        return time.time() - os.stat(os.path.join(SHM_DIR, os_name)).st_mtime
    except OSError:
        return 0.0


class SegmentInfo(str):
    """The OS name of a segment (a ``str``, as in shm-comm's API), with what its header says as
    attributes: ``pattern`` ("pubsub", "reqrep", "pipeline", "pair-m2s", "pair-s2m", "stream"),
    ``channel``, ``stale``,
    ``creator_pid``, ``creator_alive``, ``publishers`` and ``subscribers`` (the live keepers and
    followers: publishers/subscribers, repliers/requesters, pushers/pullers), ``num_slots``,
    ``slot_size``, ``size_bytes``, ``head`` (messages ever sent), ``flags`` (``SHMC_LOSSLESS``, ...),
    ``layout_version``, ``session_id`` (new for each creation), ``state`` ("ready", "closed",
    "replaced"), ``error`` (why the header could not be read, else None)."""

    pattern: str
    channel: str
    stale: bool
    creator_pid: int
    creator_alive: bool
    publishers: int
    subscribers: int
    num_slots: int
    slot_size: int
    size_bytes: int
    head: int
    flags: int
    layout_version: int
    session_id: int
    state: str
    error: Optional[str]

    def as_dict(self) -> Dict[str, Any]:
        keys = ("pattern", "channel", "stale", "creator_pid", "creator_alive", "publishers",
                "subscribers", "num_slots", "slot_size", "size_bytes", "head", "flags",
                "layout_version", "session_id", "state", "error")
        return {"os_name": str(self), **{k: getattr(self, k) for k in keys}}


def segment_info(os_name: str) -> SegmentInfo:
    """Reads the header of segment ``os_name`` (e.g. ``"shmcomm_pub_robot+2fpose"``) without
    attaching to it. Unreadable segments are reported with ``error`` set and ``stale`` True."""
    if not isinstance(os_name, str):
        raise SHMTypeError(f"segment_info takes the segment's OS name as a str, not {type(os_name).__name__}")
    if "\x00" in os_name:
        raise SHMValueError(f"{os_name!r} contains a NUL character: not a segment name")
    info = SegmentInfo(os_name)
    raw = ffi.new("shmc_segment_info_t *")
    raw.size = ffi.sizeof("shmc_segment_info_t")
    rc = lib.shmc_segment_info(os_name.encode("utf-8", "surrogateescape"), raw)
    info.error = None if rc == 0 else b.strerror(rc)
    if rc == b.EAGAIN:
        info.error = "header never completed (its creator died while creating it, or is creating it now)"
    info.pattern = _PATTERNS.get(raw.pattern, "unknown") if rc == 0 else "unknown"
    info.channel = ffi.string(raw.channel).decode("utf-8", "replace") if rc == 0 else ""
    info.creator_pid = int(raw.creator_pid)
    info.creator_alive = bool(raw.creator_alive)
    info.publishers = int(raw.publishers)
    info.subscribers = int(raw.subscribers)
    info.num_slots = int(raw.num_slots)
    info.slot_size = int(raw.slot_size)
    info.size_bytes = int(raw.segment_bytes)
    info.head = int(raw.head)
    info.flags = int(raw.flags)
    info.layout_version = int(raw.layout_version)
    info.session_id = int(raw.session_id)
    info.state = _STATES.get(int(raw.state), "unknown")
    # Unreadable (corrupt, or a creator that died mid-creation) counts as stale, except when the
    # OS denied access: another user's live channel is not ours to judge.
    if rc == 0 or raw.creator_pid:
        info.stale = bool(raw.stale)  # judged by the creator's liveness, even for a broken header
    else:
        # Not even the creator's pid: a creation in its first microseconds, or garbage. Give a
        # creator a few seconds; another user's segment (EACCES) is never ours to judge.
        info.stale = rc != b.EACCES and _age_seconds(os_name) > _CREATION_GRACE_S
    return info


# What the registry's two roles are called in each pattern (keepers keep a channel alive).
_ROLE_NAMES = {"pubsub": ("publisher", "subscriber"), "reqrep": ("replier", "requester"),
               "pipeline": ("pusher", "puller"), "pair-m2s": ("master", "slave"),
               "pair-s2m": ("slave", "master"), "stream": ("writer", "reader")}
_NO_CURSOR = 2**64 - 1
_UNCOUNTED = {("pubsub", False), ("reqrep", True)}  # (pattern, is keeper): count not in the segment


class PeerInfo:
    """One process registered in a channel (a snapshot, read without locking): ``pid``, ``role``
    ("publisher", "subscriber", "replier", "requester", "pusher", "puller", "master", "slave",
    "writer", "reader"), ``alive``, ``heartbeat_age`` (seconds since it last showed activity: sending,
    or waiting in a receive), ``cursor`` (subscribers: the next position they read, else None),
    ``lag`` (subscribers: messages published that they have not read yet), ``overrun`` (the part
    of the lag already overwritten: they will count it as dropped), ``count`` (messages sent by
    publishers, pushers and requesters, taken by pullers; None where the pattern does not record
    it), ``dropped`` and ``index`` (its registry entry)."""

    __slots__ = ("index", "pid", "role", "alive", "heartbeat_age", "cursor", "lag", "overrun",
                 "count", "dropped")

    def __init__(self, index: int, pid: int, role: str, alive: bool, heartbeat_age: float,
                 cursor: Optional[int], lag: Optional[int], overrun: Optional[int],
                 count: Optional[int], dropped: int) -> None:
        self.index, self.pid, self.role, self.alive = index, pid, role, alive
        self.heartbeat_age, self.cursor, self.lag, self.overrun = heartbeat_age, cursor, lag, overrun
        self.count, self.dropped = count, dropped

    def as_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self) -> str:
        return (f"<PeerInfo {self.role} pid={self.pid} {'alive' if self.alive else 'dead'} "
                f"heartbeat_age={self.heartbeat_age:.3f}s lag={self.lag}>")


def segment_peers(os_name: str, info: Optional[SegmentInfo] = None) -> List[PeerInfo]:
    """The processes registered in segment ``os_name`` (live ones, and dead ones not reaped yet),
    read without attaching. ``info`` (from :func:`segment_info`) gives the pattern, head and ring
    size the roles and lags are computed from; read now if not given. Raises
    ``SHMConnectionError`` if the segment cannot be read (missing, foreign, another user's)."""
    if info is None:
        info = segment_info(os_name)  # also checks the name's type and NULs
    keeper, follower = _ROLE_NAMES.get(info.pattern, ("keeper", "follower"))
    out = ffi.new("shmc_peer_info_t[]", lib.SHMC_MAX_PEERS)
    out[0].size = ffi.sizeof("shmc_peer_info_t")
    count = ffi.new("size_t *")
    b.check(lib.shmc_segment_peers(os_name.encode("utf-8", "surrogateescape"), out,
                                   lib.SHMC_MAX_PEERS, count),
            f"cannot read the peers of segment {os_name!r}",
            "list the channels with `python -m shmcomm ls`")
    broadcast = info.pattern == "pubsub"
    lossless = bool(info.flags & lib.SHMC_LOSSLESS) if info.error is None else False
    peers = []
    for e in out[0:min(int(count[0]), lib.SHMC_MAX_PEERS)]:
        is_keeper = e.role == lib.SHMC_ROLE_KEEPER
        cursor: Optional[int] = int(e.cursor)
        if is_keeper or not broadcast or cursor == _NO_CURSOR:
            cursor = None
        lag = overrun = None
        if cursor is not None:
            lag = max(0, info.head - cursor)
            overrun = 0 if lossless else max(0, lag - info.num_slots)
        # Subscribers and repliers keep their counts in their own process (stats()), not in the segment.
        counted = (info.pattern, is_keeper) not in _UNCOUNTED
        peers.append(PeerInfo(int(e.index), int(e.pid), keeper if is_keeper else follower,
                              bool(e.alive), int(e.heartbeat_age_ns) / 1e9, cursor, lag, overrun,
                              int(e.count) if counted else None, int(e.dropped)))
    return peers


def list_segments() -> List[SegmentInfo]:
    """Every ``shmcomm_*`` segment on this machine (Linux: /dev/shm), each a str (its OS name) with
    details as attributes; ``stale`` marks those whose publishers/owners are all dead."""
    if not os.path.isdir(SHM_DIR):
        if sys.platform != "win32":
            logger.debug("no %s on this system: cannot list segments", SHM_DIR)
        return []
    names = sorted(n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX))
    return [segment_info(n) for n in names]


def force_unlink(name: str) -> bool:
    """Removes the segment with OS name ``name`` (e.g. ``"shmcomm_pub_sensors"``), live or not.
    Processes that have it mapped keep working on their mapping. True if it existed."""
    if not isinstance(name, str):
        raise SHMTypeError(f"force_unlink takes the segment's OS name as a str, not {type(name).__name__}")
    if "\x00" in name:  # C would stop at the NUL and remove another segment
        raise SHMValueError(f"{name!r} contains a NUL character: not a segment name")
    if not name.startswith(PREFIX):
        raise SHMValueError(f"{name!r} is not a shmcomm segment name (they start with {PREFIX!r}); "
                         "list them with shmcomm.list_segments()")
    rc = lib.shmc_segment_unlink(name.encode("utf-8", "surrogateescape"))
    if rc == b.ENOENT:
        return False
    b.check(rc, f"cannot remove segment {name!r}")
    logger.info("removed segment %s", name)
    return True


def clean(dry_run: bool = False) -> List[SegmentInfo]:
    """Removes every stale segment (never a live one); returns those removed (or, with dry_run,
    those that would be)."""
    removed = []
    for info in list_segments():
        if not info.stale:
            continue
        if dry_run or force_unlink(str(info)):
            removed.append(info)
    return removed


def os_name(name: str, pattern: str = "pubsub") -> str:
    """The OS object name of channel ``name`` for ``pattern``."""
    codes = {v: k for k, v in _PATTERNS.items()}
    if not isinstance(pattern, str):
        raise SHMTypeError(f"pattern must be a str (one of {', '.join(codes)}), not {type(pattern).__name__}")
    if pattern not in codes:
        raise SHMValueError(f"unknown pattern {pattern!r}: one of {', '.join(codes)}")
    out = ffi.new("char[]", 256)
    b.check(lib.shmc_os_name(check_name(name), codes[pattern], out, 256),
            f"invalid channel name {name!r}")
    name_out: str = ffi.string(out).decode()
    return name_out


__all__ = ["SegmentInfo", "PeerInfo", "segment_info", "segment_peers", "list_segments", "force_unlink",
           "clean", "os_name"]

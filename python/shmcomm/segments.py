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
             lib.SHMC_PATTERN_PIPELINE: "pipeline"}
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
    attributes: ``pattern`` ("pubsub", "reqrep" or "pipeline"), ``channel``, ``stale``,
    ``creator_pid``, ``creator_alive``, ``publishers`` and ``subscribers`` (the live keepers and
    followers: publishers/subscribers, repliers/requesters, pushers/pullers), ``num_slots``,
    ``slot_size``, ``size_bytes``, ``head`` (messages ever sent), ``error`` (why the header could not
    be read, else None)."""

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
    state: str
    error: Optional[str]

    def as_dict(self) -> Dict[str, Any]:
        keys = ("pattern", "channel", "stale", "creator_pid", "creator_alive", "publishers",
                "subscribers", "num_slots", "slot_size", "size_bytes", "head", "state", "error")
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


__all__ = ["SegmentInfo", "segment_info", "list_segments", "force_unlink", "clean", "os_name"]

"""PAIR: the ESHM two-way channel between two processes, a master and a slave.

Each side writes its own queue and reads the other's, in order, exactly once; nothing written is lost
while the other side restarts. Each side publishes a heartbeat (a background C thread, no GIL), so
:meth:`Pair.is_remote_alive` is true while the remote's process lives and its heartbeat is younger
than ``stale_threshold``. When the remote dies and a new process takes its role, this side reattaches
by itself and says so in the log (``logging.getLogger("shmcomm")``) and in :meth:`Pair.stats`.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _binding as b
from ._endpoint import check_int, check_name, timeout_to_ns
from ._io import MODES, Receiver, Sender, check_geometry
from .errors import SHMConnectionError, SHMPeerDeadError, SHMTimeoutError, SHMTypeError, SHMValueError
from .log import logger
from .serialize import codec

ffi, lib = b.ffi, b.lib


class PairRole(enum.IntEnum):
    """The roles of ESHM (same values): the master and the slave; AUTO takes the master role if no
    live process holds it, else the slave role."""

    MASTER = 0
    SLAVE = 1
    AUTO = 2


class DisconnectBehavior(enum.IntEnum):
    """What :meth:`Pair.read` and :meth:`Pair.write` do while the remote is gone (dead, closed, or
    stale) after it had been there. Messages already queued are always read first."""

    IMMEDIATELY = 0  #: raise SHMPeerDeadError at once
    ON_TIMEOUT = 1   #: wait for a new remote; raise once it has been gone for reconnect_wait
    NEVER = 2        #: never raise for it: keep waiting (and queueing)


_REMOTE_STATES = {0: "none", 1: "connected", 2: "stale", 3: "gone", 4: "gave_up"}


def _enum_arg(value: Any, kind: Any, what: str) -> int:
    if isinstance(value, kind):
        return int(value)
    if isinstance(value, str):
        try:
            return int(kind[value.upper()])
        except KeyError:
            pass
        choices = ", ".join(repr(m.name.lower()) for m in kind)
        raise SHMValueError(f"{what} must be one of {choices} (or {kind.__name__}), got {value!r}")
    raise SHMTypeError(f"{what} must be a str or {kind.__name__}, not {type(value).__name__}")


def _seconds(value: Any, what: str, allow_zero: bool) -> int:
    if value is None:
        raise SHMTypeError(f"{what} must be a number of seconds, not None")
    ns = timeout_to_ns(value, what)
    if ns == -1 and value is not None:  # 31 years or more (or inf): as good as forever
        return 2**62
    if ns < 0 or (ns == 0 and not allow_zero):
        raise SHMValueError(f"{what} must be a number of seconds {'>=' if allow_zero else '>'} 0, got {value!r}")
    return ns


class Pair(Sender, Receiver):
    """One side of pair ``name``: the ESHM channel, two endpoints and two directions.

    ``role``: "master", "slave" or "auto" (default: master if no live process holds that role, else
    slave), or a :class:`PairRole`. A role held by a live process raises SHMConnectionError.
    ``disconnect_behavior``: "immediately", "on_timeout" (default) or "never" (see
    :class:`DisconnectBehavior`). ``stale_threshold`` (s): a remote whose heartbeat is older is stale.
    ``reconnect_wait`` (s), ``reconnect_retry_interval`` (s) and ``max_reconnect_attempts`` (0 =
    unlimited) bound how long a side waits for a restarted remote under "on_timeout".
    ``num_slots``/``slot_size``: depth and largest message of the queue this side writes.
    ``use_threads``: publish the heartbeat from a background thread (else only inside calls, so an
    idle side looks stale to its remote after ``stale_threshold``).
    """

    def __init__(self, name: str, role: Union[str, PairRole] = "auto", *,
                 disconnect_behavior: Union[str, DisconnectBehavior] = "on_timeout",
                 stale_threshold: float = 0.1, reconnect_wait: float = 5.0,
                 reconnect_retry_interval: float = 0.1, max_reconnect_attempts: int = 50,
                 num_slots: int = 64, slot_size: int = 4096, serialization: str = "pickle",
                 use_threads: bool = True, spin_us: int = 50, mode: int = 0o600) -> None:
        super().__init__(name)
        raw_name = check_name(name)
        opts = ffi.new("shmc_pair_options_t *")
        lib.shmc_pair_options_init(opts)
        opts.role = _enum_arg(role, PairRole, "role")
        opts.disconnect = _enum_arg(disconnect_behavior, DisconnectBehavior, "disconnect_behavior")
        opts.stale_threshold_ns = _seconds(stale_threshold, "stale_threshold", False)
        opts.reconnect_wait_ns = _seconds(reconnect_wait, "reconnect_wait", True)
        opts.reconnect_retry_interval_ns = _seconds(reconnect_retry_interval, "reconnect_retry_interval", False)
        opts.max_reconnect_attempts = check_int(max_reconnect_attempts, "max_reconnect_attempts", 0, 2**32 - 1)
        check_geometry(num_slots, slot_size, 2, mode)
        opts.num_slots, opts.slot_size = num_slots, slot_size
        opts.spin_us = check_int(spin_us, "spin_us", 0, 1_000_000)
        if not isinstance(use_threads, bool):
            raise SHMTypeError(f"use_threads must be a bool, not {type(use_threads).__name__}")
        opts.flags = MODES[mode] | (0 if use_threads else lib.SHMC_PAIR_NO_HEARTBEAT_THREAD)
        self._dumps, self._loads = codec(serialization)
        self.serialization, self.num_slots, self.slot_size = serialization, num_slots, slot_size
        self.disconnect_behavior = DisconnectBehavior(opts.disconnect)
        self.stale_threshold, self.reconnect_wait = stale_threshold, reconnect_wait
        out = ffi.new("shmc_pair_t **")
        rc = lib.shmc_pair_open(raw_name, opts, out)
        if rc:
            self._open_failed(rc, PairRole(opts.role))
        self._handle = out[0]
        self._role = PairRole(lib.shmc_pair_role(self._handle))
        self._send = lib.shmc_pair_write
        self._try_send = lib.shmc_pair_try_write
        self._send_many = lib.shmc_pair_write_many
        self._next = lib.shmc_pair_next
        self._recv = lib.shmc_pair_read
        self._buffer_fn = lib.shmc_pair_buffer
        self._recv_many = lib.shmc_pair_read_many
        self._cap, self._buffer = 0, b""
        self._seen_state, self._seen_reconnections, self._seen_pid = 0, 0, 0
        logger.info("pair %r: opened as %s", name, self.role)
        self._observe()

    def _open_failed(self, rc: int, role: PairRole) -> None:
        if rc == b.EPEERS:
            held = "both roles are" if role == PairRole.AUTO else f"the {role.name.lower()} role is"
            raise SHMConnectionError(
                f"cannot open pair {self.name!r}: {held} held by live processes; stop that process "
                f"first, use another pair name, or open the other role", rc)
        hints = {
            b.ENAME: "use a non-empty name without control characters or '.'/'..' components",
            b.ENOSPC: "free /dev/shm (python -m shmcomm clean) or enlarge it (Docker: --shm-size=1g)",
            b.EACCES: "the pair belongs to another user: run as that user, or have it created with "
                      "mode=0o660 and share a group",
            b.EINVAL: "check num_slots * slot_size (at most 1 TiB in all)",
        }
        b.raise_error(rc, f"cannot open pair {self.name!r}", hints.get(rc, ""))

    # -- buffers -------------------------------------------------------------------------------
    def _refresh_buffer(self) -> None:
        pointer = ffi.new("const void **")
        cap = ffi.new("size_t *")
        b.check(self._buffer_fn(self._require(), pointer, cap), f"buffer of {self.name!r}")
        self._cap = int(cap[0])
        self._buffer = ffi.buffer(pointer[0], self._cap) if self._cap else b""

    def recv_many_bytes(self, max_messages: int = 64, timeout: Optional[float] = None) -> List[bytes]:
        """Up to ``max_messages`` of the remote's messages in one call; waits for the first only."""
        if not self._cap:  # the remote's queue was not there yet: its slot size sizes the batch
            self._refresh_buffer()
            if not self._cap:  # still not there: wait for its first message alone
                first = self.recv_bytes(timeout)
                return [] if first is None else [first]
        return super().recv_many_bytes(max_messages, timeout)

    # -- the ESHM API ----------------------------------------------------------------------------
    @property
    def role(self) -> str:
        """"master" or "slave": the role this side took."""
        return self._role.name.lower()

    def get_role(self) -> PairRole:
        """This side's role as a :class:`PairRole` (ESHM's ``get_role``)."""
        return self._role

    def write(self, data: Any, timeout: Optional[float] = None) -> None:
        """Serializes ``data`` and queues it for the remote. While the queue is full (the remote is
        slow or absent), waits up to ``timeout`` seconds (None: forever) then raises
        :class:`SHMTimeoutError`. Raises :class:`SHMPeerDeadError` as ``disconnect_behavior`` says."""
        self.send_bytes(self._serialize(data), block=True, timeout=timeout)

    def read(self, timeout: Optional[float] = 1.0) -> Any:
        """The remote's next message, deserialized. Waits up to ``timeout`` seconds (default 1 s, as
        ESHM; None: forever) and raises :class:`SHMTimeoutError` if none came."""
        n = self._receive(self._next, timeout)
        if n is None:
            raise SHMTimeoutError(
                f"no message from the {self._remote_role} of pair {self.name!r} within {timeout} s; "
                f"check that it is running (is_remote_alive()) or read with a longer timeout",
                b.ETIMEDOUT)
        return self._deserialize(self._buffer[0:n])

    def try_read(self) -> Any:
        """The remote's next message if one is queued, else None (never waits)."""
        return self.recv(timeout=0)

    def read_bytes(self, timeout: Optional[float] = 1.0) -> bytes:
        """Like :meth:`read`, the raw bytes."""
        data = self.recv_bytes(timeout)
        if data is None:
            raise SHMTimeoutError(
                f"no message from the {self._remote_role} of pair {self.name!r} within {timeout} s", b.ETIMEDOUT)
        return data

    def send(self, data: Any, *, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Serializes and queues ``data``; ``block=False`` raises SHMBufferFullError on a full queue."""
        return self.send_bytes(self._serialize(data), block=block, timeout=timeout)

    # send_bytes(payload, *, block=True, timeout=None): Sender's.

    def send_many_bytes(self, payloads: Sequence[Any], *, block: bool = True,
                        timeout: Optional[float] = None) -> int:
        """Queues a batch of bytes-like messages in one C call; returns how many."""
        return self._send_many_payloads(payloads, block, timeout)

    def send_packed(self, data: Any, sizes: Any, *, block: bool = True, timeout: Optional[float] = None) -> int:
        """Queues a batch of messages packed back to back in ``data`` (a C-contiguous bytes-like
        object) in one C call: ``sizes`` is an int (every message that many bytes) or a buffer of
        uint64, one size per message (see :meth:`Pusher.send_packed`). Returns how many; the
        remote reads them one by one, or with :meth:`recv_packed`."""
        return self._send_packed(data, sizes, block, timeout)

    def is_remote_alive(self) -> bool:
        """True while the remote's process lives and its heartbeat is younger than stale_threshold.
        Also reattaches to a restarted remote."""
        s = self._stats_raw()  # one C call: it looks at the remote (as shmc_pair_remote_alive) and reports
        self._observe(s)
        return bool(s.remote_state == lib.SHMC_REMOTE_CONNECTED)

    def wait_for_remote(self, timeout: Optional[float] = None) -> bool:
        """Waits up to ``timeout`` seconds (None: forever) for the remote to be alive; True if it is."""
        ns = timeout_to_ns(timeout)
        deadline = None if ns < 0 else time.monotonic_ns() + ns
        pause = 0.0005
        while not self.is_remote_alive():
            if deadline is not None and time.monotonic_ns() >= deadline:
                return False
            time.sleep(pause)  # polling a condition with a deadline, not a sleep-and-hope
            pause = min(pause * 2, 0.01)
        return True

    @property
    def remote_pid(self) -> int:
        """The remote's pid (the last one seen), 0 if none ever attached."""
        s = self._stats_raw()
        return int(s.slave_pid if self._role == PairRole.MASTER else s.master_pid)

    def _stats_raw(self) -> Any:
        s = ffi.new("shmc_pair_stats_t *")
        s.size = ffi.sizeof("shmc_pair_stats_t")
        b.check(lib.shmc_pair_stats(self._require(), s), f"stats of pair {self.name!r}")
        return s

    def stats(self) -> Dict[str, Any]:
        """ESHM's statistics: master_pid, slave_pid, master_alive, slave_alive, master_heartbeat and
        slave_heartbeat (seconds since the last beat; None if unknown), m2s_write_count,
        m2s_read_count, s2m_write_count, s2m_read_count (each counted by the process now in that
        role, since it opened: after a restart of one side its counts start again from 0); plus role, remote_state ("none", "connected", "stale", "gone",
        "gave_up"), drops, reconnections, reconnect_attempts and remote_gone_for (s)."""
        s = self._stats_raw()
        self._observe(s)

        def age(ns: int) -> Optional[float]:
            return None if ns == 2**64 - 1 else ns / 1e9

        return {
            "name": self.name,
            "role": self.role,
            "master_pid": s.master_pid,
            "slave_pid": s.slave_pid,
            "master_alive": bool(s.master_alive),
            "slave_alive": bool(s.slave_alive),
            "master_heartbeat": age(s.master_heartbeat_age_ns),
            "slave_heartbeat": age(s.slave_heartbeat_age_ns),
            "m2s_write_count": s.m2s_write_count,
            "m2s_read_count": s.m2s_read_count,
            "s2m_write_count": s.s2m_write_count,
            "s2m_read_count": s.s2m_read_count,
            "remote_state": _REMOTE_STATES.get(s.remote_state, "unknown"),
            "drops": s.drops,
            "reconnections": s.reconnections,
            "reconnect_attempts": s.reconnect_attempts,
            "remote_gone_for": s.remote_gone_ns / 1e9,
        }

    get_stats = stats  # the ESHM name

    # -- the log -------------------------------------------------------------------------------
    @property
    def _remote_role(self) -> str:
        return "slave" if self._role == PairRole.MASTER else "master"

    def _observe(self, s: Any = None) -> None:
        """Logs what changed about the remote since the last look: attached, lost, reconnected."""
        if s is None:
            s = self._stats_raw()
        state, pid = int(s.remote_state), int(s.slave_pid if self._role == PairRole.MASTER else s.master_pid)
        if state == self._seen_state and s.reconnections == self._seen_reconnections:
            return
        remote = f"pair {self.name!r}: the {self._remote_role}"
        if s.reconnections != self._seen_reconnections:
            logger.info("%s (pid %d) is back: reconnected to the new process (reconnection %d, previous pid %d)",
                        remote, pid, s.reconnections, self._seen_pid)
        elif state == 1:
            logger.info("%s (pid %d) is connected", remote, pid)
        elif state == 2:
            logger.warning("%s (pid %d) is stale: no heartbeat for over %s s", remote, pid, self.stale_threshold)
        elif state == 3:
            logger.warning("%s (pid %d) is gone; reconnecting (every retry interval, up to %s s)",
                           remote, pid, self.reconnect_wait)
        elif state == 4:
            logger.error("%s (pid %d) has been gone for %.1f s after %d attempts: giving up until it returns",
                         remote, pid, s.remote_gone_ns / 1e9, s.reconnect_attempts)
        self._seen_state, self._seen_reconnections, self._seen_pid = state, int(s.reconnections), pid

    # -- errors --------------------------------------------------------------------------------
    def _peer_dead(self, doing: str) -> SHMPeerDeadError:
        s = self._stats_raw()
        self._observe(s)
        pid = s.slave_pid if self._role == PairRole.MASTER else s.master_pid
        state = _REMOTE_STATES.get(s.remote_state, "gone")
        if state == "stale":
            what = f"is stale (pid {pid} lives but sent no heartbeat for over {self.stale_threshold} s)"
        elif state == "gave_up":
            what = (f"(pid {pid}) has been gone for {s.remote_gone_ns / 1e9:.1f} s and did not come back "
                    f"after {s.reconnect_attempts} attempts")
        else:
            what = f"(pid {pid}) is gone (it exited or was killed)"
        return SHMPeerDeadError(
            f"cannot {doing} pair {self.name!r}: the {self._remote_role} {what}; restart it (this side "
            f"reattaches by itself), or open the pair with disconnect_behavior='never' to keep waiting",
            b.EPEERDEAD)

    def _receive_failed(self, rc: int) -> None:
        if rc == b.EPEERDEAD:
            raise self._peer_dead("read from")
        super()._receive_failed(rc)

    def _send_failed(self, rc: int, size: int, timeout: Optional[float]) -> None:
        if rc == b.EPEERDEAD:
            raise self._peer_dead("write to")
        super()._send_failed(rc, size, timeout)

    def _full_message(self) -> str:
        return f"pair {self.name!r}: the queue to the {self._remote_role} is full (it reads slower, or is not running)"

    def _close_handle(self, handle: Any) -> None:
        lib.shmc_pair_close(handle)

    def __repr__(self) -> str:
        if self.closed:
            return f"<Pair {self.name!r} closed>"
        s = self.stats()
        return (f"<Pair {self.name!r} role={self.role} remote={s['remote_state']} "
                f"master_pid={s['master_pid']} slave_pid={s['slave_pid']}>")


__all__ = ["Pair", "PairRole", "DisconnectBehavior"]

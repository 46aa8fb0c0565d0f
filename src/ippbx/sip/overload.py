"""Overload control: when ippbx cannot keep up, refuse new work cheaply and finish the rest.

Past its capacity a SIP server that accepts everything answers late, its peers retransmit,
and it spends its time on retransmissions: goodput falls far below capacity (a
retransmission storm). `LoadShedder` decides what to refuse instead. It is fed, every
`interval` (0.1 s), three measurements of the process the UA runs in:

* `backlog`: the bytes waiting in the UDP socket's receive buffer (the kernel's
  SO_MEMINFO; about 1.3 KB per datagram). This is the queue a saturated loop builds:
  the loop still runs short iterations, never late, while datagrams wait in the kernel
  until their senders retransmit them;
* `lag`: how late the measuring callback ran (every message waits about that long; it
  grows when the process is starved of CPU by others). Only a lag that lasts counts
  (`LATE_SAMPLES` intervals in a row): one long callback - a start, a garbage
  collection - is no overload, and limiting admissions to the floor after it would
  refuse the registrations of a PBX that just came up;
* `busy`: the share of the interval the loop's thread spent on the CPU, smoothed over
  about half a second. It does not say "overloaded" (measured: a loop 96 % busy still
  kept its queue under 40 datagrams), only "calm" below one half.

While the backlog is over `backlog_max` (512 KiB: about 400 datagrams, 50-100 ms of
work) or the lag has been over `lag_max` (0.1 s) for three intervals, the number of new
requests admitted per second (`limit`) is cut to 95 % of what was admitted in the last
interval (multiplicative decrease), once per rise of the queue: while a backlog over the
threshold shrinks (by a tenth per interval) under a limit already set, the limit is
held, not cut again (the queue of work admitted before the cut takes a few intervals to
drain; cutting for each of them undershoots far below capacity); while neither holds, it
grows by 3 % per interval, 10 % when the loop is calm (additive increase would take too
long from a low value), and once it is well above what arrives (`RELEASE` x the admitted
rate) the limit is lifted. New INVITEs and REGISTERs (out of dialog, not retransmissions
of ones already accepted, and not INVITEs that carry credentials: those answer a
challenge we sent, and refusing them would waste the work done) pass a token bucket of
`limit` per second; the others get a stateless `503 Service Unavailable` with
`Retry-After`, before any transaction, dialog or digest work. ACKs, CANCELs, BYEs,
in-dialog requests, responses and retransmissions are always served, so the calls
already accepted complete.

Sans-IO: no clock, no loop; `UserAgent` measures and asks `admit(now)`.
"""

from __future__ import annotations

__all__ = ["LoadShedder", "SHED_METHODS"]

SHED_METHODS = frozenset({"INVITE", "REGISTER"})
DECREASE = 0.95  # limit after an overloaded interval, x the rate admitted in it
INCREASE = 1.03  # limit growth per interval under the thresholds
INCREASE_FAST = 1.1  # ... and per interval of a calm loop
RELEASE = 3.0  # lift the limit once it exceeds this many times the admitted rate
FLOOR = 5.0  # never admit fewer than this many new requests per second
BURST = 0.2  # token bucket depth, in seconds of `limit`
SMOOTHING = 0.2  # weight of the newest busy sample (about 0.5 s at 0.1 s intervals)
CALM_BUSY = 0.5  # a loop busy less than this is calm: the limit may grow fast
LATE_SAMPLES = 3  # intervals in a row with the lag over lag_max that count as overload
DRAINING = 0.9  # a backlog under this share of the one before is draining: no new cut


class LoadShedder:
    """Admission of new INVITEs/REGISTERs under load; see the module docstring."""

    __slots__ = ("lag_max", "backlog_max", "interval", "retry_after", "limit",
                 "busy", "lag", "backlog", "peak_lag", "peak_backlog", "shed", "admitted",
                 "episodes", "_window", "_tokens", "_refilled", "_late", "_previous")

    def __init__(self, *, lag_max: float = 0.1, backlog_max: int = 512 * 1024,
                 interval: float = 0.1, retry_after: int = 2) -> None:
        if lag_max <= 0 or interval <= 0 or backlog_max <= 0:
            raise ValueError("lag_max, backlog_max and interval must be > 0")
        self.lag_max = lag_max
        self.backlog_max = backlog_max
        self.interval = interval
        self.retry_after = retry_after  # seconds, for the 503's Retry-After
        self.limit: float | None = None  # new requests admitted per second; None: all
        self.busy = 0.0  # smoothed busy share
        self.lag = 0.0  # last measured lag, seconds
        self.backlog = 0  # last measured receive backlog, bytes
        self.peak_lag = 0.0
        self.peak_backlog = 0
        self.shed = 0  # requests refused so far
        self.admitted = 0  # requests admitted so far (counted only while limited)
        self.episodes = 0  # times a limit was set
        self._window = 0  # admitted in the current interval
        self._tokens = 0.0
        self._refilled = 0.0
        self._late = 0  # samples in a row with the lag over lag_max
        self._previous = 0  # the backlog of the sample before

    @property
    def limited(self) -> bool:
        return self.limit is not None

    def sample(self, now: float, busy: float, lag: float, backlog: int = 0) -> None:
        """The measurements of the interval that ended at `now`."""
        self.busy += SMOOTHING * (busy - self.busy)
        self.lag = max(lag, 0.0)
        self.backlog = backlog
        self.peak_lag = max(self.peak_lag, self.lag)
        self.peak_backlog = max(self.peak_backlog, backlog)
        admitted_rate = self._window / self.interval
        self._window = 0
        self._late = self._late + 1 if self.lag > self.lag_max else 0
        previous, self._previous = self._previous, backlog
        if self._late >= LATE_SAMPLES or backlog > self.backlog_max:
            if (self.limit is not None and self._late < LATE_SAMPLES
                    and backlog < DRAINING * previous):
                return  # the queue shrinks under the limit set: no second cut for it
            base = admitted_rate if self.limit is None else min(self.limit, admitted_rate)
            if self.limit is None:
                self.episodes += 1
                self._tokens, self._refilled = 0.0, now
            self.limit = max(FLOOR, DECREASE * base)
        elif self.limit is not None:
            calm = (self.busy < CALM_BUSY and self.lag < self.lag_max / 2
                    and backlog < self.backlog_max / 4)
            self.limit *= INCREASE_FAST if calm else INCREASE
            if self.limit > RELEASE * max(admitted_rate, FLOOR):
                self.limit = None

    def admit(self, now: float) -> bool:
        """May a new INVITE/REGISTER be taken now? (Counts it either way.)"""
        self._window += 1
        limit = self.limit
        if limit is None:
            return True
        tokens = min(self._tokens + (now - self._refilled) * limit, max(1.0, limit * BURST))
        self._refilled = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            self.admitted += 1
            return True
        self._tokens = tokens
        self._window -= 1  # a refused request is not admitted work
        self.shed += 1
        return False

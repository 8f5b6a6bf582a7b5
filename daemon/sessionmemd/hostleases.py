"""The host's lease changes: acquire, renew, release, expire, a connection's
ephemeral leases ending, and fencing a mutating call by a lease. The lease table and
its rules are leases.py's; this turns them into changes (one revision each).
Sans-I/O (hostcore.py)."""

from __future__ import annotations

from msgspec import UNSET

from sessionmem import protocol as p

from .hostcore import FRAME_HEAD, HostCore, encode
from .leases import Held, held_error


class LeaseChanges(HostCore):
    """Leases as changes: each that ends or takes a lease takes a revision."""

    # -- leases ---------------------------------------------------------------------------
    def now(self) -> int:
        return self._now()

    def fence(self, ref: p.LeaseRef | p.UnsetType) -> None:
        """A mutating call's ``lease``: LeaseHeld unless that lease is held, now, with
        that token. Checked when the call applies, before anything changes."""
        if ref is not UNSET:
            self.leases.check(ref, self._now())  # type: ignore[arg-type]

    def _lease_change(self, op: str, h: Held) -> None:
        change = self._next(op, h.session_id, lease=h.wire())
        self.log.append(change.revision, h.session_id, b"%s%s}\n" % (FRAME_HEAD, encode(change)))
        self.on_change()

    def acquire_lease(self, name: str, owner: str, ttl: int | None, sid: str, conn: object) -> p.Lease:
        """Take ``name`` for ``owner``: its token is this change's revision. Held by the
        same owner: renewed, token kept (no change). A lease whose time passed but the
        timer has not ended yet ends first (its own change)."""
        now = self._now()
        leases = self.leases
        h = leases.live(name, now)
        if h is not None:
            if h.owner != owner:
                until = "until its connection closes" if h.expires_at is None else f"until {h.expires_at}"
                raise held_error(name, h, f"held by {h.owner!r} {until}")
            leases.extend(h, ttl, now)
            self.on_leases()
            return h.wire()
        if not self.room_for(2):
            self._room()
        if name in leases.held:
            self._lease_change("leaseExpired", leases.remove(name))
        h = Held(name, owner, self.revision + 1, None if ttl is None else now + ttl, ttl, sid,
                 None if ttl is not None else conn)
        leases.put(h)
        self._lease_change("acquireLease", h)
        self.on_leases()
        return h.wire()

    def renew_lease(self, name: str, token: int, ttl: int | None) -> p.Lease:
        """A new expiry from now (not a change: no revision, no notification; written
        with the next batch)."""
        now = self._now()
        h = self.leases.check(p.LeaseRef(name, token), now)
        self.leases.extend(h, ttl, now)
        self.on_leases()
        return h.wire()

    def release_lease(self, name: str, token: int) -> None:
        self.leases.check(p.LeaseRef(name, token), self._now())
        self._check_room()
        self._lease_change("releaseLease", self.leases.remove(name))
        self.on_leases()

    def expire_leases(self) -> int:
        """End every lease whose time has passed (the lease timer calls this): one
        ``leaseExpired`` change each. How many ended."""
        names = self.leases.due(self._now())
        for name in names:
            self._check_room()
            self._lease_change("leaseExpired", self.leases.remove(name))
        return len(names)

    def connection_closed(self, conn: object) -> int:
        """The ephemeral leases ``conn`` took end now: no longer held from this moment
        (their expiry set to now), their ``leaseExpired`` changes recorded by the lease
        timer, which this wakes."""
        names = self.leases.of_connection(conn)
        if names:
            now = self._now()
            for name in names:
                h = self.leases.held[name]
                h.expires_at = now
                h.conn = None
            self.on_leases()
        return len(names)

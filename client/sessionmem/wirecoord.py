"""The wire of coordination (part of ``sessionmem.protocol``): leases (acquire, renew,
release, list; the ``Lease`` result) and ``transact`` (several changes to one session,
all or none). Fencing's ``lease`` param is in wirebase.py: every mutating call has it.
"""

from __future__ import annotations

from msgspec import UNSET, Raw, Struct, UnsetType

from .wirebase import Fence, LeaseName, LeaseOwner, Revision, SessionRef, TtlMs, _Params


class TransactOp(_Params):
    """One op of a transaction: a mutating method of one session's parts and its params
    (without ``session``: the transaction's applies)."""

    method: str
    params: Raw | UnsetType = UNSET


class TransactParams(_Params):
    ops: list[TransactOp]
    session: SessionRef = UNSET
    # The addressed session's revision (of its last change) must be this, else -32009.
    expectRevision: Revision | UnsetType = UNSET
    lease: Fence = UNSET


class AcquireLeaseParams(_Params):
    name: LeaseName
    owner: LeaseOwner
    ttlMs: TtlMs | UnsetType = UNSET  # absent: ephemeral, ends with the connection
    session: SessionRef = UNSET  # which session the lease concerns (absent: the current)


class RenewLeaseParams(_Params):
    name: LeaseName
    token: Revision
    ttlMs: TtlMs | UnsetType = UNSET  # absent: the ttl it was acquired with


class ReleaseLeaseParams(_Params):
    name: LeaseName
    token: Revision


class ListLeasesParams(_Params):
    session: SessionRef = UNSET  # only the leases concerning this session; absent: all


class Lease(Struct, kw_only=True):
    """A live lease (acquireLease's and renewLease's result, listLeases' items, and
    the ``lease`` of a lease change)."""

    name: str
    owner: str
    token: int  # the revision of its acquisition: a later holder's is larger
    expiresAt: int | None  # epoch ms; null: ephemeral (ends when its connection closes)
    sessionId: str
    ttlMs: int | None = None

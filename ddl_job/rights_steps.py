"""The steps around `rights`: check both sides before extraction, and grant or
revoke the memberships a restore borrows (`grantMembership`).

Checking is its own step so that it runs before anything costs or changes:
the engine records what it will grant before granting it, so Cleanup can
revoke it whatever happens after.
"""

from __future__ import annotations

from typing import Any

from . import rights, superuser_only
from .conn import Endpoint, refuse_same_database
from .names import target_names
from .progress import NullReporter, Reporter


def check(source: Endpoint, target: Endpoint, schemas: list[str], suffix: str, *,
          grant_membership: bool = False, reporter: Reporter | None = None) -> dict[str, Any]:
    """Owners in the copy, rights in the copy and production; refuse what is
    missing (with `grant_membership`, only what cannot be granted)."""
    reporter = reporter or NullReporter()
    mapping = target_names(schemas, suffix)
    with source.connect(application_name="pgsr-rights") as src, \
            target.connect(application_name="pgsr-rights") as tgt:
        refuse_same_database(src, tgt, source, target)
        # old and new names: a resumed run finds some schemas already renamed
        names = list(mapping) + list(mapping.values())
        superuser_only.refuse(src, tgt, names, target.describe())
        found = rights.check(src, tgt, names)
        error = rights.refusal(found.all(), {rights.COPY: src, rights.PRODUCTION: tgt},
                               grant_membership)
        members = {rights.COPY: src.info.user, rights.PRODUCTION: tgt.info.user}
    if error is not None:
        raise error
    result = {**found.to_dict(), "member": members}
    reporter.emit("rights_checked", missing=result["missing"])
    return result


def change(endpoint: Endpoint, roles: list[str], *, revoke: bool, where: str,
           reporter: Reporter | None = None) -> list[str]:
    """GRANT (or REVOKE) `roles` to the connecting role on one side."""
    reporter = reporter or NullReporter()
    with endpoint.connect(application_name="pgsr-membership") as conn:
        done = rights.revoke(conn, roles) if revoke else rights.grant(conn, roles, where)
    reporter.emit("memberships_revoked" if revoke else "memberships_granted",
                  side=where, roles=done)
    return done

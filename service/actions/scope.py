"""Who is calling, on behalf of which tenant."""

from __future__ import annotations

from dataclasses import dataclass

from ..auth import BANK_DATA_ROLES, BANK_SYNC_PLANS, CONNECTION_ADMIN_ROLES, Plan, Role
from ..errors import Forbidden, PlanRequired

__all__ = ["Scope"]


@dataclass(frozen=True, slots=True)
class Scope:
    tenant_id: int
    tenant_slug: str
    tenant_name: str
    plan: Plan
    subject: str
    role: Role
    expires_at: float = float("inf")

    @property
    def sees_bank_data(self) -> bool:
        return self.role in BANK_DATA_ROLES

    def require_bank_data(self) -> None:
        if not self.sees_bank_data:
            raise Forbidden(
                f"role {self.role.value} may not see bank data; OWNER, ADMIN or ACCOUNTANT can"
            )

    def require_connection_admin(self) -> None:
        if self.role not in CONNECTION_ADMIN_ROLES:
            raise Forbidden(
                f"role {self.role.value} may not manage bank connections; OWNER or ADMIN can"
            )

    def require_bank_sync_plan(self) -> None:
        if self.plan not in BANK_SYNC_PLANS:
            raise PlanRequired(
                f"bank sync is part of the DIGITAL and PROFI plans; tenant {self.tenant_slug!r}"
                f" is on {self.plan.value}"
            )

"""Who is asking: the Caller every use-case receives, and the one rule of what a caller sees. A
tenant sees its own jobs and collections and nothing else; an admin sees all. What a caller may not
see does not exist for it (a 404, never a 403), so a key learns nothing of other tenants' ids."""

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select

Selected = TypeVar("Selected", bound=Select[Any])


@dataclass(frozen=True)
class Caller:
    """The principal behind a request: the tenant of its API key (None with RERANK_AUTH=off and
    for rerankq's own processes), whether the key is an admin's, and the key's id."""

    tenant: str | None
    admin: bool
    key_id: str | None = None

    def sees(self, tenant: str | None) -> bool:
        return self.admin or tenant == self.tenant

    def visible(self, stmt: Selected, tenant_column: Any) -> Selected:
        """`stmt` narrowed to the rows this caller may see."""
        return stmt if self.admin else stmt.where(tenant_column == self.tenant)

    @property
    def quota_name(self) -> str:
        """The tenant's name in quota and idempotency keys ("" with RERANK_AUTH=off)."""
        return self.tenant or ""


# The CLI's embedded run, the worker and RERANK_AUTH=off: trusted, no tenant, sees everything.
TRUSTED = Caller(tenant=None, admin=True)

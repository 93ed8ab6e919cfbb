"""Reconcile: parsed resources in, routing Snapshot and statuses out, as one pure function.

Both config sources (a manifest directory and the Kubernetes watch) call `reconcile(resources, options)`
whenever something changed, publish `result.snapshot` with one assignment, open or close sockets for
`result.ports`, and hand `result.statuses` to the status writer. `format_statuses` renders them for
people (the status command and the debug dump).
"""

from kthena_router.reconcile.printer import format_statuses
from kthena_router.reconcile.status import Statuses
from kthena_router.reconcile.translate import ReconcileResult, reconcile

__all__ = ["ReconcileResult", "Statuses", "format_statuses", "reconcile"]

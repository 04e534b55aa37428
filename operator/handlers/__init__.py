"""kopf handlers, one module per event (crate-operator style); importing registers them."""

from mtdicom_operator.handlers import handle_reconcile, handle_status, indexes, lifecycle

__all__ = ["handle_reconcile", "handle_status", "indexes", "lifecycle"]

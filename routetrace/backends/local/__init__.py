"""The embedded local store: one directory, one SQLite database in WAL mode.

:class:`LocalStore` (``store``) owns the connections and the lock; ``schema`` the tables and
the format check; ``write`` turns the export worker's TraceRecords into rows; ``read``
searches, counts and loads traces back, never rebuilding anything.
"""

from routetrace.backends.local.store import LocalStore

__all__ = ["LocalStore"]

"""Local backups, start-up decision and recovery mode (DESIGN.md S5, seed 002).

See docs/recovery.md. Modules, one concept each: ``backup_file`` (format and
directory), ``startup`` (the pure five-case decision), ``state`` (the
recovery records, read), ``writer`` (internal writes through the leader),
``restore``, ``backup_loop``, ``mode`` (recovery mode), ``service`` (the
phases of a node and the API gate), ``routes`` (HTTP endpoints).
"""

from .backup_file import Backup, BackupDir, BackupError, BackupHeader, decode, encode, read
from .routes import RecoveryRoutes
from .service import EXIT_REFUSED, Phase, RecoveryService
from .startup import Action, Decision, StoreFacts, decide
from .state import Offer, RecoveryView
from .writer import StoreWriter

__all__ = [
    "EXIT_REFUSED",
    "Action",
    "Backup",
    "BackupDir",
    "BackupError",
    "BackupHeader",
    "Decision",
    "Offer",
    "Phase",
    "RecoveryRoutes",
    "RecoveryService",
    "RecoveryView",
    "StoreFacts",
    "StoreWriter",
    "decide",
    "decode",
    "encode",
    "read",
]

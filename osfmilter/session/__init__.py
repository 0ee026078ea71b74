"""The session: one SMTP connection's state, the stages run through the policy, the records.

``connection.py`` is the state machine the adapter drives, ``recorder.py``
what a decision leaves behind, ``ports.py`` the policy's ports the session
provides itself, ``services.py`` what is injected, ``faults.py`` the one
table from a fault to its answer.
"""

from osfmilter.session.connection import MilterSession
from osfmilter.session.recorder import OWN_HEADER
from osfmilter.session.services import Services

__all__ = ["OWN_HEADER", "MilterSession", "Services"]

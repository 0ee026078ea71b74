"""Sender reputation: the state machine of docs/states.rst, 'Transitions', and its store.

``transitions`` is the pure rule book; ``store`` loads an identity's standing,
applies one event and stores the result in one locked transaction.
"""

from osfmilter.reputation.transitions import (
    SYSTEM,
    Event,
    Incident,
    IncidentKind,
    LimitRefusal,
    OperatorAction,
    OperatorActionKind,
    Outcome,
    Rules,
    Standing,
    Tick,
    Transition,
    apply,
)

__all__ = [
    "SYSTEM",
    "Event",
    "Incident",
    "IncidentKind",
    "LimitRefusal",
    "OperatorAction",
    "OperatorActionKind",
    "Outcome",
    "Rules",
    "Standing",
    "Tick",
    "Transition",
    "apply",
]

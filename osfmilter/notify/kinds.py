"""The notification types, and what ``[notify] disabled`` may name (config reads it)."""

from __future__ import annotations

from enum import StrEnum


class NoticeType(StrEnum):
    """The ``type`` of a notification: its kind, a dot, what happened."""

    STATE_VERDACHT = "state.verdacht"
    STATE_ONVEILIG = "state.onveilig"
    STATE_VEILIG = "state.veilig"
    VOLUME_80 = "volume.80"
    VOLUME_100 = "volume.100"
    REFUSAL_FOREIGN_DOMAIN = "refusal.foreign_domain"
    REFUSAL_UNREGISTERED = "refusal.unregistered_sender"

    @property
    def kind(self) -> str:
        """What ``[notify] disabled`` names: ``state``, ``volume`` or ``refusal``."""
        return self.value.partition(".")[0]


KINDS = frozenset(t.kind for t in NoticeType)
DISABLEABLE = frozenset({*KINDS, *(str(t) for t in NoticeType)})

"""rate_renewal: a reservation that may expire before the accept is admitted again."""

from __future__ import annotations

from osfmilter.config import config_from_dict
from osfmilter.limits.rate import Reservation
from osfmilter.policy.steps.rate_renewal import reservations_current
from osfmilter.policy.steps.rate_window import rate_window
from tests.unit.policy.builders import world


def test_a_fresh_reservation_is_left_alone() -> None:
    w = world()
    assert rate_window.check(w.context) is None
    before = list(w.tx.reservations)
    assert reservations_current.check(w.context) is None
    assert w.tx.reservations == before


def test_one_due_is_replaced_by_a_new_admission() -> None:
    w = world()
    assert rate_window.check(w.context) is None
    [old] = w.tx.reservations
    w.clock.advance(600)  # expires in 300 s: within content_timeout plus the margin
    assert reservations_current.check(w.context) is None
    [new] = w.tx.reservations
    assert new.id != old.id and new.expires > old.expires


def test_a_window_that_filled_meanwhile_refuses_and_keeps_the_old_one() -> None:
    config = config_from_dict({"plans": {"free": {"rate_known": 1}}})
    w = world(config=config)
    assert rate_window.check(w.context) is None
    [old] = w.tx.reservations
    w.clock.advance(2000)  # expired: another message takes the only slot
    other = w.limiter.reserve("server:192.0.2.0/24", old.buckets)
    assert isinstance(other, Reservation)
    refusal = reservations_current.check(w.context)
    assert refusal is not None and w.tx.rate_denied is not None
    assert w.tx.reservations == [old]

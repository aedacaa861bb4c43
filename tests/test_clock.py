import pytest

from ai4land_coupler.clock import ModelClock
from ai4land_coupler.errors import ClockError


def test_monthly_cadence_and_new_year():
    c = ModelClock("noleap")
    first = c.advance(2020, 1, 1)
    assert first.new_year and first.new_lai_period
    e = c.advance(2020, 1, 15)
    assert not e.new_year and not e.new_lai_period
    assert c.advance(2020, 2, 1).new_lai_period
    e = c.advance(2021, 1, 1, 3600)
    assert e.new_year and e.new_lai_period


def test_ndays_cadence():
    c = ModelClock("360_day", "ndays", 10)
    flags = [c.advance(2000, 1, d).new_lai_period for d in range(1, 31)]
    assert [d + 1 for d, f in enumerate(flags) if f] == [1, 11, 21]
    assert c.advance(2000, 1, 1 + 29).days_in_year == 360


def test_calendar_validation_and_time_order():
    with pytest.raises(ClockError, match="not a date in the noleap calendar"):
        ModelClock("noleap").advance(2020, 2, 29)
    assert ModelClock("gregorian").advance(2020, 2, 29).day_of_year == 60
    c = ModelClock("noleap")
    c.advance(2020, 5, 1)
    with pytest.raises(ClockError, match="time went backwards"):
        c.advance(2020, 4, 30)
    with pytest.raises(ClockError, match="second of day"):
        c.advance(2020, 5, 2, 86400)

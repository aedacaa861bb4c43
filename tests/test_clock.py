import datetime

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


@pytest.mark.parametrize("calendar, days_in_year", [("noleap", 365), ("365_day", 365), ("360_day", 360),
                                                    ("gregorian", 366), ("standard", 366), ("proleptic_gregorian", 366)])
def test_every_calendar_steps_through_a_year_day_by_day(calendar, days_in_year):
    import cftime

    c = ModelClock(calendar, "daily")
    date = cftime.datetime(2032, 1, 1, calendar=calendar)  # a leap year where the calendar has them
    flags = []
    while date.year == 2032:
        flags.append(c.advance(date.year, date.month, date.day, 43200).new_lai_period)
        date += datetime.timedelta(days=1)
    assert len(flags) == days_in_year and all(flags)
    assert c.advance(2033, 1, 1).new_year


def test_month_middles_follow_the_calendar():
    assert ModelClock("360_day").month_middle(2031, 2)[1] == 45.0
    assert ModelClock("noleap").month_middle(2031, 2)[1] == 31 + 14.0
    assert ModelClock("gregorian").month_middle(2032, 2)[1] == 31 + 14.5
    noleap = ModelClock("noleap")
    assert noleap.month_middle(2032, 1)[0] - noleap.month_middle(2031, 12)[0] == 31.0

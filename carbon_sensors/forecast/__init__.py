"""Forecasts of carbon intensity: seasonal naive (the floor), our ridge model, and the provider+model blend."""

from carbon_sensors.forecast.base import Forecaster, HourlyHistory
from carbon_sensors.forecast.combine import assemble_forecast, blend, blend_weights
from carbon_sensors.forecast.model import CalendarLagForecaster
from carbon_sensors.forecast.naive import SeasonalNaive

__all__ = [
    "CalendarLagForecaster",
    "Forecaster",
    "HourlyHistory",
    "SeasonalNaive",
    "assemble_forecast",
    "blend",
    "blend_weights",
]

"""Forecasts of carbon intensity: seasonal naive (the floor), our ridge model, and how to combine them."""

from carbon_sensors.forecast.base import Forecaster, HourlyHistory
from carbon_sensors.forecast.combine import inverse_variance_blend, provider_then_model
from carbon_sensors.forecast.model import CalendarLagForecaster
from carbon_sensors.forecast.naive import SeasonalNaive

__all__ = [
    "CalendarLagForecaster",
    "Forecaster",
    "HourlyHistory",
    "SeasonalNaive",
    "inverse_variance_blend",
    "provider_then_model",
]

"""Package data: embedded real traces (see ATTRIBUTION.md)."""

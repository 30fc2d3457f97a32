"""Incidents followed over their life: merged facts, levels and overrides, obligations and their clocks."""

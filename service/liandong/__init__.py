"""Liandong: answers what an emergency plan requires for an incident."""

__version__ = "0.1.0"

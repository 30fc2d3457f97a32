"""Reliability and security tests (issue 6): bad input, broken documents, limits, faults, load, TLS, independent clients."""

SOAK_DECISIONS = 1_000_000  # decisions the soak (soak.py, test_soak.py) makes in one process

"""Reliability and security tests (issue 6): bad input, broken documents, limits, faults, load, TLS, independent clients."""

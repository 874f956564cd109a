"""Simulators (phones, cards) that drive the production adapters in tests and scenarios.

Kept apart from the production path so nothing here can be mistaken for, or
imported by, the code that makes real door decisions.
"""

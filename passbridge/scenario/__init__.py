"""Scenario files: a site plus a timed script of device actions and expectations."""

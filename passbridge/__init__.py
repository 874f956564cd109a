"""passbridge: phones as door credentials, decided by one auditable core."""

__version__ = "0.1.0"

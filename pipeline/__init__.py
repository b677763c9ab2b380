"""Batch scoring of daily partitions with registered scikit-learn models.

This package never imports Airflow: every stage runs from the CLI and from tests.
"""

from __future__ import annotations

__version__ = "0.1.0"

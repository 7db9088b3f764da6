"""Batch prediction: a stored model over files and tables (``amber predict``,
``amber.predict``) and over Spark DataFrames (``amber.spark``).

pyarrow, pandas and pyspark are imported only when a prediction runs.
"""

from __future__ import annotations

from amber.batch.predict import Report, predict, predict_file

__all__ = ["Report", "predict", "predict_file"]

"""amber on Spark: ``amber.spark.predict(df, "churn@production")`` and
``amber.spark.udf(spark, "churn", "churn@production")``.

Importing this module imports neither pyspark nor pyarrow; they load when called.
"""

from __future__ import annotations

from amber.batch.spark import errors, predict, udf

__all__ = ["errors", "predict", "udf"]

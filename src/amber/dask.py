"""amber on Dask: ``amber.dask.predict(ddf, "churn@production", store=...)``.

Importing this module imports neither dask nor pyarrow; they load when called.
"""

from __future__ import annotations

from amber.batch.dask import predict

__all__ = ["predict"]

"""``headcount-collector demo``: a collector, an instrumented site, and simulated visitors.

Quickstart command one. ``_run.py`` starts the collector and the site (``_site.py``, a
small Flask shop shipped in the package, so no checkout is needed), ``_traffic.py``
browses the site; everything lives in a temporary folder removed at the end.
"""

from headcount_collector.demo._run import run_demo
from headcount_collector.demo._traffic import drive_traffic

__all__ = ["drive_traffic", "run_demo"]

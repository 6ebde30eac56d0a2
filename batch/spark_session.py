"""The Spark session a scoring run uses: a local one bound to loopback, or the one spark-submit made.

A local session (`local[*]`, `local[2]`) listens on 127.0.0.1 only, has no web UI, logs errors only and
runs its Python workers on this interpreter, so they import the same textclf. Under `spark-submit` the
cluster's settings win: the session is taken as spark-submit configured it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
LOOPBACK = "127.0.0.1"
# errors only, on stderr: Spark's INFO/WARN start-up chatter is not the user's business
LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


def under_spark_submit() -> bool:
    """Whether this process is a driver that spark-submit started (it hands over a gateway port)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def quiet_pandas_notice() -> None:
    """PySpark 4 warns on every Arrow UDF that pandas >= 3 is not fully supported; the scoring runs on
    pyarrow batches (mapInArrow), never through pandas, so the notice says nothing about this job."""
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )


def local_conf(master: str, log_config: Path) -> dict[str, str]:
    """The settings of a local session: loopback only, no UI, quiet, workers on this Python, reused."""
    return {
        "spark.master": master,
        "spark.app.name": "textclf predict-spark",
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.python.worker.reuse": "true",  # one Python worker per core, kept across tasks
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={log_config.as_uri()}",
        "spark.sql.session.timeZone": "UTC",
    }


@contextmanager
def spark_session(master: str | None = None) -> Iterator[SparkSession]:
    """A session for one run (stopped afterwards). `master` None: spark-submit's when it started this
    process, else DEFAULT_MASTER. A local master gets `local_conf`; a cluster master only its name."""
    from pyspark.sql import SparkSession

    quiet_pandas_notice()
    scratch = Path(tempfile.mkdtemp(prefix="textclf-spark-"))
    try:
        builder = SparkSession.builder
        if master is None and under_spark_submit():
            pass
        elif (master or DEFAULT_MASTER).startswith("local"):
            log_config = scratch / "log4j2.properties"
            log_config.write_text(LOG4J2, encoding="utf-8")
            os.environ["SPARK_LOCAL_IP"] = LOOPBACK
            os.environ["PYSPARK_PYTHON"] = sys.executable
            for key, value in local_conf(master or DEFAULT_MASTER, log_config).items():
                builder = builder.config(key, value)
        else:
            builder = builder.master(master)  # type: ignore[arg-type]
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        try:
            yield spark
        finally:
            spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

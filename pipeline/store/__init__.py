"""The output database, split by concern: import the submodule you need (nothing is re-exported here).

``engines`` (connection ids -> engines, transactions), ``names`` (quoted identifiers), ``sqlfiles``
(the text of ``sql/*.sql``), ``locks`` (lock patience), ``schema`` (operational tables), ``tables``
(a job's predictions and shadow tables), ``layout`` (PostgreSQL layout migrations), ``comments``,
``grants``, ``analyst`` (reader views, latest rows, summaries), ``writes`` (partition writes),
``bulk`` and ``swap`` (PostgreSQL's COPY and load-table swap), ``loads`` (load tables left behind).
"""

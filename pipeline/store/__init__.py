"""The output database, split by concern: import the submodule you need (nothing is re-exported here).

``engines`` (connection ids -> engines, transactions), ``naming`` (validated, quoted identifiers),
``sqlfiles`` (the text of ``sql/*.sql`` and the named statements of ``sql/store/*.sql``), ``locks``
(lock patience), ``operational`` (the ledger's tables brought up to date, with their comments),
``migrate`` (migrations of the operational tables through Alembic; the environment and revisions in
``store/alembic/``), ``job_tables`` (a job's predictions and shadow tables), ``layout`` (PostgreSQL
layout migrations of a predictions table), ``comments``, ``grants``, ``analyst`` (reader views,
latest rows, summaries), ``writes`` (partition writes), ``bulk`` and ``swap`` (PostgreSQL's COPY and
load-table swap), ``load_tables`` (load tables left behind).
"""

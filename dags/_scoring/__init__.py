"""DAG factory helpers (not a DAG folder: listed in .airflowignore)."""

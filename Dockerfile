# The project on the official Airflow image; used by every Airflow service in docker-compose.yml and by the
# online door (scoring-serve).
FROM apache/airflow:3.3.2-python3.11
USER airflow
WORKDIR /opt/scoring
COPY --chown=airflow:root requirements.txt pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.txt
COPY --chown=airflow:root pipeline ./pipeline
COPY --chown=airflow:root dags ./dags
COPY --chown=airflow:root plugins ./plugins
COPY --chown=airflow:root sql ./sql
COPY --chown=airflow:root scripts ./scripts
RUN pip install --no-cache-dir --no-deps -e .
ENV SCORING_HOME=/opt/scoring \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/scoring/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/scoring/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
# The compose stack's shared volume (models, staging, reports, dead letters) is filled from this folder when it
# is first created: owned by airflow, group root and group-writable (setgid), so the workers (airflow) and the
# online door (any uid in group root: AIRFLOW_UID) can both write in it
USER root
RUN mkdir -p /shared/models /shared/staging /shared/reports /shared/deadletter \
 && chown -R airflow:root /shared && chmod -R 2775 /shared
USER airflow

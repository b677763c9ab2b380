# The project on the official Airflow image; used by every Airflow service in docker-compose.yml.
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

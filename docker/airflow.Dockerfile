# Airflow 3.3.2 with Carbon-Aware-Trainer and the Celery, Amazon (S3) and PostgreSQL extras.
# Every Airflow service of docker-compose.yml runs this image: the triggerer and the api-server need the
# provider too (its triggers and its UI plugin), not only the workers.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root . /opt/carbon-aware-trainer
# The CPU build of torch (the default index would pull several GB of CUDA wheels).
RUN pip install --no-cache-dir "apache-airflow==3.3.2" "torch==2.13.0" \
        --extra-index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir "apache-airflow==3.3.2" "torch==2.13.0" \
        "/opt/carbon-aware-trainer[airflow,airflow-celery]"

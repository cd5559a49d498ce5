# Prefect 3.9.1 with Carbon-Aware-Trainer, s3fs (S3 checkpoints) and asyncpg (the server's PostgreSQL).
FROM prefecthq/prefect:3.9.1-python3.11
COPY . /opt/carbon-aware-trainer
RUN pip install --no-cache-dir "prefect==3.9.1" "torch==2.13.0" \
        --extra-index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir "prefect==3.9.1" "torch==2.13.0" "/opt/carbon-aware-trainer[prefect,prefect-s3]"

-- One PostgreSQL server, one database each for Airflow's metadata and the Prefect server.
CREATE USER airflow WITH PASSWORD 'airflow';
CREATE DATABASE airflow OWNER airflow;
CREATE USER prefect WITH PASSWORD 'prefect';
CREATE DATABASE prefect OWNER prefect;

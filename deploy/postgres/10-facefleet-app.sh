#!/bin/sh
# First start of the compose service `postgres` (this folder is its
# /docker-entrypoint-initdb.d: the image runs it once, on an empty data volume, while the
# server listens on its unix socket only, with POSTGRES_USER, POSTGRES_DB and PGPASSWORD
# set); tests/test_compose_stack.py runs this same file against the embedded PostgreSQL.
#
#  - pgvector, created by the superuser: the extension is not "trusted", so the archive's
#    `CREATE EXTENSION IF NOT EXISTS vector` can run as an ordinary role only when it
#    already exists (it then does nothing).
#  - The role facefleet_app, which the workers, beat and the API log in as: no superuser,
#    no CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS, password $APP_POSTGRES_PASSWORD. It owns
#    the database, and with it the schema public (owned by pg_database_owner since
#    PostgreSQL 15), where the archive's migrations create their tables and indexes.
#  - Tables already in public (a volume made by an older compose file, whose migrations ran
#    as the superuser) are handed to facefleet_app; on a new database there are none.
#
# Reruns are harmless; by hand on an existing volume:
#   docker-compose exec postgres sh /docker-entrypoint-initdb.d/10-facefleet-app.sh
# The image sources this file when it is not executable: no `exit`, no `set -u`. The password
# reaches psql in the environment (psql's \getenv), never on a command line.
: "${APP_POSTGRES_PASSWORD:?set APP_POSTGRES_PASSWORD}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${POSTGRES_DB:?set POSTGRES_DB}"

APP_POSTGRES_PASSWORD="$APP_POSTGRES_PASSWORD" psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv app_password APP_POSTGRES_PASSWORD
CREATE EXTENSION IF NOT EXISTS vector;
SELECT 'CREATE ROLE facefleet_app LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'facefleet_app') \gexec
SELECT format('ALTER ROLE facefleet_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
    'NOREPLICATION NOBYPASSRLS PASSWORD %L', :'app_password') \gexec
SELECT format('ALTER DATABASE %I OWNER TO facefleet_app', current_database()) \gexec
SELECT format('ALTER TABLE public.%I OWNER TO facefleet_app', tablename)
FROM pg_tables WHERE schemaname = 'public' AND tableowner <> 'facefleet_app' \gexec
SQL

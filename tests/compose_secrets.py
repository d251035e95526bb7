"""The secrets docker-compose.yml requires (each `${NAME:?...}`, never a default), named once
for the tests that render or check the compose files."""

COMPOSE_SECRETS = (
    "REDIS_PASSWORD",
    "S3_ROOT_SECRET_KEY",
    "S3_APP_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "APP_POSTGRES_PASSWORD",
    "FACEFLEET_FLOWER_PASSWORD",
    "FACEFLEET_WEBHOOK_SECRET",
    "FACEFLEET_API_SESSION_SECRET",
)

-- API keys of the HTTP API (facefleet.api). Only a SHA-256 of each key's secret part is
-- kept: the secret is 256 random bits, so a fast hash is enough (no password stretching
-- needed), and a stolen table gives no usable key.
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  text NOT NULL,
    scopes       text[] NOT NULL,
    callback_url text,
    created      timestamptz NOT NULL DEFAULT now(),
    revoked      timestamptz,
    last_used    timestamptz
);

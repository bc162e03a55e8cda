-- Accounts: organisations, users and their roles, refresh-token families, OAuth codes, API keys.
-- Every resource table carries org_id; every query the API runs is scoped by it.

CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    -- Stored lower-cased: one account per address whatever its spelling.
    email          text NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    org_id      uuid NOT NULL REFERENCES orgs (id),
    user_id     uuid NOT NULL REFERENCES users (id),
    role        text NOT NULL CHECK (role IN ('owner', 'member')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Refresh tokens rotate: each use marks the token used and issues its successor in the same
-- family. A used token presented again means it leaked, and the whole family is revoked.
CREATE TABLE refresh_tokens (
    id           uuid PRIMARY KEY,
    family_id    uuid NOT NULL,
    org_id       uuid NOT NULL REFERENCES orgs (id),
    user_id      uuid NOT NULL REFERENCES users (id),
    -- SHA-256 of the secret; the secret itself is only ever in the client's hands.
    token_hash   bytea NOT NULL UNIQUE,
    -- The OAuth client that obtained the family, NULL for password logins.
    client_id    text,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- OAuth 2.0 authorization codes (RFC 6749 §4.1 with PKCE S256, RFC 7636): single use, short-lived.
CREATE TABLE oauth_codes (
    code_hash       bytea PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES orgs (id),
    user_id         uuid NOT NULL REFERENCES users (id),
    client_id       text NOT NULL,
    redirect_uri    text NOT NULL,
    code_challenge  text NOT NULL,
    scopes          text[] NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs (id),
    name          text NOT NULL,
    -- The key's first characters (`kiln_live_ab12`), shown in listings to tell keys apart.
    prefix        text NOT NULL,
    secret_hash   bytea NOT NULL UNIQUE,
    scopes        text[] NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('live', 'test')),
    created_by    uuid REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);

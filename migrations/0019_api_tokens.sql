-- API tokens for `weft server` (issue 15). A token is shown once, when
-- created; only its SHA-256 digest is kept, and a request's token is
-- found by its digest (unique). A revoked or expired token stays listed
-- (who had access, until when) and is refused.

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    -- A person's label for it: who or what holds it.
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    digest        bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- NULL: never expires.
    expires_at    timestamptz,
    revoked_at    timestamptz,
    -- Updated at most once a minute per token, not on every request.
    last_used_at  timestamptz
);

-- `GET /api/v1/runs?workflow=NAME` pages a workflow's runs newest first.
CREATE INDEX workflow_executions_workflow_created_idx
    ON workflow_executions (workflow_name, created_at DESC, id DESC);

-- The evidence store (issue 22): its own schema, created and migrated idempotently by
-- shadow/publish/evidence_store.py on every writer / console start. Every statement is
-- safe to run again; a new column is added with ADD COLUMN IF NOT EXISTS.
CREATE SCHEMA IF NOT EXISTS shadow_evidence;

-- Findings aggregated per (minute, entity, route, path, outcome): writers upsert-add counts.
-- path '' = the route's own count of that outcome (comparisons, errors, skipped:<reason>);
-- a field path = a difference at that path (mismatch, transient, unstable, noisy, ...).
CREATE TABLE IF NOT EXISTS shadow_evidence.findings (
    minute  timestamptz NOT NULL,
    entity  text        NOT NULL,
    route   text        NOT NULL,
    path    text        NOT NULL,
    outcome text        NOT NULL,
    count   bigint      NOT NULL,
    PRIMARY KEY (entity, route, path, outcome, minute)
);
CREATE INDEX IF NOT EXISTS findings_minute ON shadow_evidence.findings (minute);
CREATE INDEX IF NOT EXISTS findings_route_minute ON shadow_evidence.findings (minute) WHERE path = '';
-- (an index per path on the minute table cost more to write and store than it saved the 1 h page)
DROP INDEX IF EXISTS shadow_evidence.findings_path;

-- The same counts per hour (written in the same transaction): the console reads windows
-- longer than a few hours from here, so a page stays fast over weeks of minutes.
CREATE TABLE IF NOT EXISTS shadow_evidence.findings_hourly (
    hour    timestamptz NOT NULL,
    entity  text        NOT NULL,
    route   text        NOT NULL,
    path    text        NOT NULL,
    outcome text        NOT NULL,
    count   bigint      NOT NULL,
    first_minute timestamptz NOT NULL,
    last_minute  timestamptz NOT NULL,
    PRIMARY KEY (entity, route, path, outcome, hour)
);
CREATE INDEX IF NOT EXISTS findings_hourly_hour ON shadow_evidence.findings_hourly (hour);
CREATE INDEX IF NOT EXISTS findings_hourly_route_hour ON shadow_evidence.findings_hourly (hour) WHERE path = '';
CREATE INDEX IF NOT EXISTS findings_hourly_path ON shadow_evidence.findings_hourly (entity, path, hour)
    WHERE path <> '';

-- A bounded number of whole examples per path, redacted before they left the sidecar.
CREATE TABLE IF NOT EXISTS shadow_evidence.examples (
    id            bigserial   PRIMARY KEY,
    at            timestamptz NOT NULL,
    entity        text        NOT NULL,
    route         text        NOT NULL,
    key           text,
    outcome       text        NOT NULL,
    paths         text[]      NOT NULL,
    pod           text        NOT NULL,
    rules_version text,
    trace_id      text,
    source        text,
    params        jsonb,
    query         text,
    rechecks      jsonb,
    diffs         jsonb       NOT NULL,
    control       jsonb,
    candidate     jsonb
);
CREATE INDEX IF NOT EXISTS examples_paths ON shadow_evidence.examples USING gin (paths);
CREATE INDEX IF NOT EXISTS examples_at ON shadow_evidence.examples (entity, at DESC);

-- One row per pod: the health strip (last report, rules version, queue, drops by reason).
CREATE TABLE IF NOT EXISTS shadow_evidence.pods (
    pod           text        PRIMARY KEY,
    started       timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    rules_version text,
    queue_depth   bigint      NOT NULL DEFAULT 0,
    drops         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    errors        jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- The audit trail: `shadow verify` runs and the documents each difference names,
-- `shadow gate` verdicts with their reasons.
CREATE TABLE IF NOT EXISTS shadow_evidence.verify_runs (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL,
    layer    text        NOT NULL,
    outcome  text        NOT NULL,
    summary  jsonb       NOT NULL
);
CREATE TABLE IF NOT EXISTS shadow_evidence.verify_documents (
    run      bigint NOT NULL REFERENCES shadow_evidence.verify_runs (id) ON DELETE CASCADE,
    entity   text   NOT NULL,
    key      text   NOT NULL,
    kind     text   NOT NULL,
    detail   text   NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS verify_documents_run ON shadow_evidence.verify_documents (run);
CREATE TABLE IF NOT EXISTS shadow_evidence.gate_verdicts (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL,
    verdict  text        NOT NULL,
    reasons  jsonb       NOT NULL,
    report   jsonb       NOT NULL
);

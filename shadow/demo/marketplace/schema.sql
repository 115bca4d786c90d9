-- The marketplace reference domain, remodeled for PostgreSQL (DESIGN §1).
-- Every main table: id uuid PK + legacy_object_id (the Mongo _id, 24 hex) unique.
-- References are uuid FKs; id_map resolves them back to legacy ids.
-- Column names are the snake_case of the API field path (buyerId -> buyer_id,
-- profile.firstName -> profile_first_name); see docs/domain.md for every field.

CREATE TYPE ref_kind AS ENUM ('entity', 'template');
CREATE TYPE currency_code AS ENUM ('USD', 'EUR', 'GBP', 'USDT', 'ETH');
CREATE TYPE user_role AS ENUM ('buyer', 'seller', 'admin');
CREATE TYPE offer_status AS ENUM ('pending', 'accepted', 'rejected', 'withdrawn');
CREATE TYPE purchase_request_status AS ENUM ('open', 'in_progress', 'completed', 'cancelled');
CREATE TYPE payment_status AS ENUM ('pending', 'processing', 'completed', 'failed', 'refunded');
CREATE TYPE payment_method AS ENUM ('card', 'bank_transfer', 'crypto', 'wallet');
CREATE TYPE ledger_entry_type AS ENUM ('hold', 'release', 'refund', 'fee', 'payout');
CREATE TYPE dispute_reason AS ENUM ('not_delivered', 'not_as_described', 'damaged', 'fraud', 'other');
CREATE TYPE dispute_status AS ENUM ('open', 'under_review', 'resolved', 'rejected');
CREATE TYPE evidence_type AS ENUM ('image', 'document', 'text', 'link');

CREATE TABLE id_map (
    collection       text NOT NULL,
    legacy_object_id text NOT NULL CHECK (legacy_object_id ~ '^[0-9a-f]{24}$'),
    new_id           uuid NOT NULL UNIQUE,
    PRIMARY KEY (collection, legacy_object_id)
);

-- ------------------------------------------------------------------ users
CREATE TABLE users (
    id                         uuid PRIMARY KEY,
    legacy_object_id           text NOT NULL UNIQUE,
    email                      text,
    password_hash              text NOT NULL,
    name                       text NOT NULL,
    role                       user_role NOT NULL,
    profile_first_name         text,
    profile_last_name          text,
    profile_phone              text,
    referral_code              text,
    referred_by                uuid REFERENCES users (id),
    is_email_verified          boolean NOT NULL DEFAULT false,
    email_verification_token   text,
    email_verification_expires timestamptz,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL,
    CHECK (referred_by IS DISTINCT FROM id)
);
CREATE UNIQUE INDEX users_email_key ON users (email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX users_referral_code_key ON users (referral_code) WHERE referral_code IS NOT NULL;

CREATE TABLE user_passkeys (
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position      integer NOT NULL CHECK (position >= 0),
    credential_id text NOT NULL UNIQUE,
    public_key    text NOT NULL,
    counter       bigint NOT NULL CHECK (counter >= 0),
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, position)
);

CREATE TABLE user_refresh_tokens (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position   integer NOT NULL CHECK (position >= 0),
    token      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, position),
    CHECK (expires_at > created_at)
);

-- ------------------------------------------------------------------ addresses
CREATE TABLE addresses (
    id               uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label            text NOT NULL,
    line1            text NOT NULL,
    line2            text,
    city             text NOT NULL,
    postal_code      text NOT NULL,
    country          char(2) NOT NULL,
    is_primary       boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX addresses_one_primary_per_user ON addresses (user_id) WHERE is_primary;
CREATE INDEX addresses_user_id ON addresses (user_id);

-- ------------------------------------------------------------------ categories
CREATE TABLE categories (
    id                  uuid PRIMARY KEY,
    legacy_object_id    text NOT NULL UNIQUE,
    name                text NOT NULL,
    slug                text NOT NULL,
    parent_ref_kind     ref_kind,
    parent_id           uuid REFERENCES categories (id) ON DELETE SET NULL,
    parent_external_ref text,
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- entity: parent_id (NULL only once the parent row was deleted: ON DELETE SET NULL);
    -- template: a free string; no kind: no parent at all.
    CONSTRAINT categories_parent_ref_agrees CHECK (CASE parent_ref_kind  -- CASE, not OR: a NULL kind must not make the CHECK pass
        WHEN 'entity' THEN parent_external_ref IS NULL
        WHEN 'template' THEN parent_id IS NULL AND parent_external_ref IS NOT NULL
        ELSE parent_id IS NULL AND parent_external_ref IS NULL END)
);
CREATE UNIQUE INDEX categories_active_name_key ON categories (lower(btrim(name))) WHERE is_active;

-- ------------------------------------------------------------------ purchase requests
CREATE TABLE purchase_requests (
    id               uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    buyer_id         uuid NOT NULL REFERENCES users (id),
    category_id      uuid REFERENCES categories (id) ON DELETE SET NULL,
    title            text NOT NULL,
    description      text,
    quantity         integer NOT NULL CHECK (quantity > 0),
    budget           numeric(38, 18) NOT NULL CHECK (budget >= 0),
    budget_currency  currency_code NOT NULL,
    status           purchase_request_status NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX purchase_requests_buyer_id ON purchase_requests (buyer_id);

CREATE TABLE pr_delivery_info (
    pr_id          uuid PRIMARY KEY REFERENCES purchase_requests (id) ON DELETE CASCADE,
    address_id     uuid REFERENCES addresses (id) ON DELETE SET NULL,
    city           text NOT NULL,
    country        char(2) NOT NULL,
    postal_code    text,
    notes          text,
    preferred_date timestamptz
);

CREATE TABLE purchase_request_preferred_sellers (
    pr_id     uuid NOT NULL REFERENCES purchase_requests (id) ON DELETE CASCADE,
    seller_id uuid NOT NULL REFERENCES users (id),
    position  integer NOT NULL CHECK (position >= 0),
    PRIMARY KEY (pr_id, seller_id),
    UNIQUE (pr_id, position)
);

-- ------------------------------------------------------------------ seller offers
CREATE TABLE seller_offers (
    id                  uuid PRIMARY KEY,
    legacy_object_id    text NOT NULL UNIQUE,
    seller_id           uuid NOT NULL REFERENCES users (id),
    purchase_request_id uuid NOT NULL REFERENCES purchase_requests (id),
    price               numeric(38, 18) NOT NULL CHECK (price >= 0),
    price_currency      currency_code NOT NULL,
    delivery_days       integer NOT NULL CHECK (delivery_days >= 0),
    message             text,
    status              offer_status NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE purchase_request_offers (
    pr_id    uuid NOT NULL REFERENCES purchase_requests (id) ON DELETE CASCADE,
    offer_id uuid NOT NULL REFERENCES seller_offers (id) ON DELETE CASCADE,
    position integer NOT NULL CHECK (position >= 0),
    PRIMARY KEY (pr_id, offer_id),
    UNIQUE (pr_id, position)
);

-- ------------------------------------------------------------------ payments
CREATE TABLE payments (
    id                            uuid PRIMARY KEY,
    legacy_object_id              text NOT NULL UNIQUE,
    buyer_id                      uuid NOT NULL REFERENCES users (id),
    purchase_request_ref_kind     ref_kind,
    purchase_request_id           uuid REFERENCES purchase_requests (id),
    purchase_request_external_ref text,
    seller_offer_ref_kind         ref_kind,
    seller_offer_id               uuid REFERENCES seller_offers (id),
    seller_offer_external_ref     text,
    seller_ref_kind               ref_kind,
    seller_id                     uuid REFERENCES users (id),
    seller_external_ref           text,
    amount                        numeric(38, 18) NOT NULL CHECK (amount >= 0),
    currency                      currency_code NOT NULL,
    status                        payment_status NOT NULL,
    method                        payment_method NOT NULL,
    blockchain                    jsonb,
    metadata                      jsonb,
    idempotency_key               text,
    created_at                    timestamptz NOT NULL,
    updated_at                    timestamptz NOT NULL,
    CONSTRAINT payments_purchase_request_ref_agrees CHECK (CASE purchase_request_ref_kind  -- CASE, not OR: a NULL kind must not make the CHECK pass
        WHEN 'entity' THEN purchase_request_id IS NOT NULL AND purchase_request_external_ref IS NULL
        WHEN 'template' THEN purchase_request_id IS NULL AND purchase_request_external_ref IS NOT NULL
        ELSE purchase_request_id IS NULL AND purchase_request_external_ref IS NULL END),
    CONSTRAINT payments_seller_offer_ref_agrees CHECK (CASE seller_offer_ref_kind  -- CASE, not OR: a NULL kind must not make the CHECK pass
        WHEN 'entity' THEN seller_offer_id IS NOT NULL AND seller_offer_external_ref IS NULL
        WHEN 'template' THEN seller_offer_id IS NULL AND seller_offer_external_ref IS NOT NULL
        ELSE seller_offer_id IS NULL AND seller_offer_external_ref IS NULL END),
    CONSTRAINT payments_seller_ref_agrees CHECK (CASE seller_ref_kind  -- CASE, not OR: a NULL kind must not make the CHECK pass
        WHEN 'entity' THEN seller_id IS NOT NULL AND seller_external_ref IS NULL
        WHEN 'template' THEN seller_id IS NULL AND seller_external_ref IS NOT NULL
        ELSE seller_id IS NULL AND seller_external_ref IS NULL END),
    CONSTRAINT payments_blockchain_is_object CHECK (blockchain IS NULL OR jsonb_typeof(blockchain) = 'object'),
    CONSTRAINT payments_metadata_is_object CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX payments_pending_idempotency_key ON payments (idempotency_key)
    WHERE status = 'pending' AND idempotency_key IS NOT NULL;
CREATE INDEX payments_buyer_id ON payments (buyer_id);

-- ------------------------------------------------------------------ funds ledger
CREATE TABLE funds_ledger_entries (
    id                            uuid PRIMARY KEY,
    legacy_object_id              text NOT NULL UNIQUE,
    user_id                       uuid NOT NULL REFERENCES users (id),
    purchase_request_ref_kind     ref_kind,
    purchase_request_id           uuid REFERENCES purchase_requests (id),
    purchase_request_external_ref text,
    payment_ref_kind              ref_kind,
    payment_id                    uuid REFERENCES payments (id),
    payment_external_ref          text,
    type                          ledger_entry_type NOT NULL,
    amount                        numeric(38, 18) NOT NULL,
    currency                      currency_code NOT NULL,
    -- unconstrained numeric: keeps the scale the source wrote ("250.5" stays 250.5)
    balance_after                 numeric,
    idempotency_key               text,
    description                   text,
    created_at                    timestamptz NOT NULL,
    CONSTRAINT ledger_purchase_request_ref_agrees CHECK (CASE purchase_request_ref_kind  -- CASE, not OR: a NULL kind must not make the CHECK pass
        WHEN 'entity' THEN purchase_request_id IS NOT NULL AND purchase_request_external_ref IS NULL
        WHEN 'template' THEN purchase_request_id IS NULL AND purchase_request_external_ref IS NOT NULL
        ELSE purchase_request_id IS NULL AND purchase_request_external_ref IS NULL END),
    CONSTRAINT ledger_payment_ref_agrees CHECK (CASE payment_ref_kind  -- CASE, not OR: a NULL kind must not make the CHECK pass
        WHEN 'entity' THEN payment_id IS NOT NULL AND payment_external_ref IS NULL
        WHEN 'template' THEN payment_id IS NULL AND payment_external_ref IS NOT NULL
        ELSE payment_id IS NULL AND payment_external_ref IS NULL END)
);
CREATE UNIQUE INDEX funds_ledger_entries_idempotency_key ON funds_ledger_entries (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- ------------------------------------------------------------------ disputes
CREATE TABLE disputes (
    id                  uuid PRIMARY KEY,
    legacy_object_id    text NOT NULL UNIQUE,
    purchase_request_id uuid NOT NULL REFERENCES purchase_requests (id),
    payment_id          uuid REFERENCES payments (id),
    opened_by           uuid NOT NULL REFERENCES users (id),
    reason              dispute_reason NOT NULL,
    status              dispute_status NOT NULL,
    resolution          text,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE dispute_evidence (
    dispute_id  uuid NOT NULL REFERENCES disputes (id) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position >= 0),
    type        evidence_type NOT NULL,
    url         text,
    description text,
    uploaded_by uuid NOT NULL REFERENCES users (id),
    uploaded_at timestamptz NOT NULL,
    PRIMARY KEY (dispute_id, position)
);

-- ordered: the API shows timeline[] in position order
CREATE TABLE dispute_timeline (
    dispute_id uuid NOT NULL REFERENCES disputes (id) ON DELETE CASCADE,
    position   integer NOT NULL CHECK (position >= 0),
    action     text NOT NULL,
    actor_id   uuid NOT NULL REFERENCES users (id),
    note       text,
    at         timestamptz NOT NULL,
    PRIMARY KEY (dispute_id, position)
);

-- Credits: a double-entry ledger, the jobs' credits, Stripe's purchases and events, Studio claims
-- and administrators.
--
-- Every movement of credits is one `ledger_transactions` row with balanced `ledger_entries`
-- (their amounts sum to zero, checked at commit). Entries never change. An organisation's
-- `available`, `reserved` and `debt` accounts carry a `balance` that the entries' trigger keeps
-- equal to the sum of their entries, so a CHECK constraint can hold `available` at zero or more
-- under any concurrency: the UPDATE that adds an entry takes the account's row lock, and the
-- constraint is checked on the value after every earlier transaction committed. System accounts
-- (what Stripe sold, what administrators granted, what jobs spent, what refunds took back) keep
-- no stored balance: every job's capture would otherwise serialise on one row. Their balances
-- are sums of their entries.

CREATE TABLE credit_accounts (
    id       uuid PRIMARY KEY,
    -- NULL for the system accounts.
    org_id   uuid REFERENCES orgs (id),
    kind     text NOT NULL CHECK (kind IN ('available', 'reserved', 'debt', 'stripe', 'grants', 'spend', 'refunds')),
    -- Sum of the account's entries (organisation accounts only), kept by ledger_entries_apply.
    balance  bigint NOT NULL DEFAULT 0,
    CHECK ((org_id IS NULL) = (kind IN ('stripe', 'grants', 'spend', 'refunds'))),
    CONSTRAINT available_not_negative CHECK (kind <> 'available' OR balance >= 0),
    CONSTRAINT reserved_not_negative CHECK (kind <> 'reserved' OR balance >= 0),
    -- Debt is what an organisation owes (refunded credits it had already spent): zero or below.
    CONSTRAINT debt_not_positive CHECK (kind <> 'debt' OR balance <= 0),
    CHECK (org_id IS NOT NULL OR balance = 0)
);
CREATE UNIQUE INDEX credit_accounts_org ON credit_accounts (org_id, kind) WHERE org_id IS NOT NULL;
CREATE UNIQUE INDEX credit_accounts_system ON credit_accounts (kind) WHERE org_id IS NULL;
INSERT INTO credit_accounts (id, org_id, kind) VALUES
    (gen_random_uuid(), NULL, 'stripe'),
    (gen_random_uuid(), NULL, 'grants'),
    (gen_random_uuid(), NULL, 'spend'),
    (gen_random_uuid(), NULL, 'refunds');

CREATE TABLE ledger_transactions (
    id          uuid PRIMARY KEY,
    -- The organisation it moves credits for.
    org_id      uuid NOT NULL REFERENCES orgs (id),
    reason      text NOT NULL CHECK (reason IN
                  ('purchase', 'subscription', 'studio', 'grant', 'revoke', 'reserve', 'capture', 'release', 'refund')),
    -- What it refers to: a job, a Stripe object (Checkout Session, invoice, charge), an admin.
    job_id      uuid REFERENCES jobs (id),
    stripe_ref  text,
    admin_id    uuid REFERENCES users (id),
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (job_id IS NOT NULL OR stripe_ref IS NOT NULL OR admin_id IS NOT NULL OR note IS NOT NULL)
);
-- Ids are UUIDv7, so their order is the order of creation: pages and running balances use it.
CREATE INDEX ledger_transactions_org ON ledger_transactions (org_id, id DESC);
CREATE INDEX ledger_transactions_job ON ledger_transactions (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE ledger_entries (
    id              bigserial PRIMARY KEY,
    transaction_id  uuid NOT NULL REFERENCES ledger_transactions (id),
    account_id      uuid NOT NULL REFERENCES credit_accounts (id),
    amount          bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id);

CREATE FUNCTION ledger_entries_apply() RETURNS trigger AS $$
BEGIN
    UPDATE credit_accounts SET balance = balance + NEW.amount WHERE id = NEW.account_id AND org_id IS NOT NULL;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_apply AFTER INSERT ON ledger_entries FOR EACH ROW EXECUTE FUNCTION ledger_entries_apply();

-- A transaction's entries sum to zero, checked when the database transaction commits.
CREATE FUNCTION ledger_transactions_balance() RETURNS trigger AS $$
DECLARE
    total bigint;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO total FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.transaction_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER ledger_transactions_balance AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transactions_balance();

-- The ledger is append-only.
CREATE FUNCTION ledger_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'check_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
-- Balances only move through entries: a direct write to an organisation account's balance is
-- refused unless it comes from the entries' trigger (pg_trigger_depth() > 0).
CREATE FUNCTION credit_accounts_guard() RETURNS trigger AS $$
BEGIN
    IF pg_trigger_depth() < 2 AND NEW.balance IS DISTINCT FROM OLD.balance THEN
        RAISE EXCEPTION 'balances move only through ledger entries' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credit_accounts_guard BEFORE UPDATE ON credit_accounts
    FOR EACH ROW EXECUTE FUNCTION credit_accounts_guard();

-- A job's credits: the price quoted at submission, what was reserved when it was queued, and
-- what its end captured (succeeded) or released (every other ending). Test-mode jobs are quoted
-- and never reserve or charge.
ALTER TABLE jobs ADD COLUMN credits_quoted bigint NOT NULL DEFAULT 0 CHECK (credits_quoted >= 0);
ALTER TABLE jobs ADD COLUMN credits_reserved bigint NOT NULL DEFAULT 0 CHECK (credits_reserved >= 0);
ALTER TABLE jobs ADD COLUMN credits_charged bigint NOT NULL DEFAULT 0 CHECK (credits_charged >= 0);
ALTER TABLE jobs ADD COLUMN credits_released bigint NOT NULL DEFAULT 0 CHECK (credits_released >= 0);
ALTER TABLE jobs ADD COLUMN photos integer NOT NULL DEFAULT 0 CHECK (photos >= 0);
ALTER TABLE jobs ADD CONSTRAINT jobs_credits_settle CHECK (credits_charged + credits_released <= credits_reserved);

-- Every Checkout Session Kiln created: what it sells, for whom. A webhook grants what was
-- bought here, never what an event's metadata claims.
CREATE TABLE checkout_sessions (
    id            text PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs (id),
    kind          text NOT NULL CHECK (kind IN ('pack', 'plan', 'studio')),
    -- The pack's or plan's id in the price table (`studio` for Studio).
    product       text NOT NULL,
    credits       bigint NOT NULL CHECK (credits > 0),
    amount        bigint NOT NULL CHECK (amount > 0),
    currency      text NOT NULL,
    created_by    uuid REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkout_sessions_org ON checkout_sessions (org_id, created_at DESC);

-- Credits bought: one row per paid Checkout Session (packs, Studio) or paid invoice (plans).
-- The UNIQUE constraints are what grants each one once, in the grant's own transaction.
CREATE TABLE purchases (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES orgs (id),
    kind                 text NOT NULL CHECK (kind IN ('pack', 'plan', 'studio')),
    product              text NOT NULL,
    checkout_session_id  text UNIQUE REFERENCES checkout_sessions (id),
    invoice_id           text UNIQUE,
    payment_intent       text UNIQUE,
    credits              bigint NOT NULL CHECK (credits > 0),
    amount               bigint NOT NULL CHECK (amount >= 0),
    currency             text NOT NULL,
    -- Credits taken back by refunds so far, and the money refunded (Stripe's cumulative figure).
    credits_refunded     bigint NOT NULL DEFAULT 0 CHECK (credits_refunded BETWEEN 0 AND credits),
    amount_refunded      bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (checkout_session_id IS NOT NULL OR invoice_id IS NOT NULL)
);
CREATE INDEX purchases_org ON purchases (org_id, created_at DESC);

-- What Stripe said of a payment's charge (receipt, refunds), kept by payment intent whether or not
-- the purchase it belongs to has arrived yet: events come in any order.
CREATE TABLE stripe_charges (
    payment_intent   text PRIMARY KEY,
    charge_id        text NOT NULL,
    receipt_url      text,
    amount_refunded  bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every Stripe event handled, once.
CREATE TABLE stripe_events (
    event_id     text PRIMARY KEY,
    type         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- Studio: a purchase with no account. The claim token (stored as SHA-256) authorises one upload,
-- one job and its downloads once the Checkout Session is paid, in an organisation of its own.
CREATE TABLE studio_claims (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL UNIQUE REFERENCES orgs (id),
    token_hash           bytea NOT NULL UNIQUE,
    checkout_session_id  text REFERENCES checkout_sessions (id),
    preset               text NOT NULL,
    max_photos           integer NOT NULL CHECK (max_photos > 0),
    paid_at              timestamptz,
    upload_id            uuid REFERENCES uploads (id),
    job_id               uuid REFERENCES jobs (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL
);

-- Staff who may look up any organisation and grant or revoke credits (`kiln-server admin`).
ALTER TABLE users ADD COLUMN is_admin boolean NOT NULL DEFAULT false;

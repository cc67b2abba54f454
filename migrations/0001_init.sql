-- Core schema: tenants, partners, documents, connections, transactions, allocations,
-- sync runs and the event outbox. Money is numeric(18,4) with its ISO 4217 currency beside it.

create table tenants (
    id          bigint generated always as identity primary key,
    slug        text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text not null,
    plan        text not null check (plan in ('FREE', 'DIGITAL', 'PROFI')),
    created_at  timestamptz not null default now()
);

create table partners (
    id           bigint generated always as identity primary key,
    tenant_id    bigint not null references tenants (id),
    external_id  text not null,
    name         text not null,
    name_norm    text not null,
    identifier   text,
    -- normalized identifier (upper case), what the matcher looks up
    identifier_norm text,
    tax_number   text,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    unique (tenant_id, external_id),
    unique (tenant_id, id)
);
create index partners_identifier on partners (tenant_id, identifier_norm) where identifier_norm is not null;
create index partners_name on partners (tenant_id, name_norm);

create table documents (
    id                     bigint generated always as identity primary key,
    tenant_id              bigint not null references tenants (id),
    kind                   text not null check (kind in ('INVOICE', 'PROFORMA', 'ORDER')),
    number                 text not null check (length(number) between 1 and 64),
    number_norm            text not null,
    order_number           text,
    order_number_norm      text,
    recurring_order_number boolean not null default false,
    variable_symbol        text check (variable_symbol ~ '^[0-9]{1,10}$'),
    specific_symbol        text check (specific_symbol ~ '^[0-9]{1,10}$'),
    constant_symbol        text check (constant_symbol ~ '^[0-9]{1,4}$'),
    -- symbols without leading zeros: 0001234 pays the same document as 1234
    variable_symbol_norm   text,
    specific_symbol_norm   text,
    payment_key            text,
    payment_key_norm       text,
    partner_id             bigint,
    issue_date             date,
    due_date               date,
    total                  numeric(18, 4) not null check (total >= 0),
    currency               char(3) not null check (currency ~ '^[A-Z]{3}$'),
    paid_amount            numeric(18, 4) not null default 0,
    payment_count          integer not null default 0 check (payment_count >= 0),
    external_id            text,
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now(),
    unique (tenant_id, kind, number),
    unique (tenant_id, id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id)
);
-- Matcher lookups: every key by exact normalized value, only among open documents.
create index documents_open_number on documents (tenant_id, number_norm) where paid_amount < total;
create index documents_open_order on documents (tenant_id, order_number_norm, id)
    where order_number_norm is not null and paid_amount < total;
create index documents_open_vs on documents (tenant_id, variable_symbol_norm)
    where variable_symbol_norm is not null and paid_amount < total;
create index documents_open_ss on documents (tenant_id, specific_symbol_norm)
    where specific_symbol_norm is not null and paid_amount < total;
create index documents_open_key on documents (tenant_id, payment_key_norm)
    where payment_key_norm is not null and paid_amount < total;
create index documents_open_partner on documents (tenant_id, partner_id, id)
    where partner_id is not null and paid_amount < total;
-- Near misses: truncated numbers (prefix / suffix) and one-edit-away references.
create index documents_open_number_prefix on documents (tenant_id, number_norm text_pattern_ops)
    where paid_amount < total;
create index documents_open_number_suffix on documents (tenant_id, reverse(number_norm) text_pattern_ops)
    where paid_amount < total;
-- Listing (by (tenant_id, id), the unique constraint) and the API's filters.
create index documents_partner on documents (tenant_id, partner_id);

-- One-edit-away lookups (symmetric deletion): each document's references with one character
-- removed. A payment's reference meets its document here when the two differ by one typo,
-- a missing or extra character, or two swapped characters.
create table document_keys (
    tenant_id    bigint not null,
    key          text not null,
    document_id  bigint not null,
    primary key (tenant_id, key, document_id),
    foreign key (tenant_id, document_id) references documents (tenant_id, id) on delete cascade
);
create index document_keys_document on document_keys (document_id);

create table bank_connections (
    id                     bigint generated always as identity primary key,
    tenant_id              bigint not null references tenants (id),
    provider               text not null,
    name                   text not null,
    status                 text not null check (status in
                               ('PENDING_CONSENT', 'ACTIVE', 'CONSENT_EXPIRED', 'DISCONNECTED', 'ERROR')),
    poll_interval_seconds  integer not null check (poll_interval_seconds between 10 and 86400),
    match_against          text[] not null,
    match_keys             text[] not null,
    -- AES-GCM(nonce || ciphertext) of the provider settings JSON; never leaves the service.
    settings_encrypted     bytea not null,
    consent_status         text check (consent_status in ('PENDING', 'VALID', 'EXPIRED', 'REVOKED', 'REJECTED')),
    consent_valid_until    timestamptz,
    consent_reference      text,
    consent_granted_at     timestamptz,
    -- reminders sent before expiry; set once by whichever replica sends them
    consent_warned_8d_at   timestamptz,
    consent_warned_2d_at   timestamptz,
    -- provider's resumable position (e.g. last movement id); advanced with the payments it fetched
    sync_cursor            jsonb,
    next_sync_at           timestamptz not null default now(),
    lease_owner            text,
    lease_expires_at       timestamptz,
    last_sync_at           timestamptz,
    last_error             text,
    failure_count          integer not null default 0,
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now(),
    disconnected_at        timestamptz,
    unique (tenant_id, id)
);
create index bank_connections_tenant on bank_connections (tenant_id, id);
create index bank_connections_due on bank_connections (next_sync_at) where status = 'ACTIVE';
create index bank_connections_consent on bank_connections (consent_valid_until)
    where consent_status = 'VALID';

create table transactions (
    id                       bigint generated always as identity primary key,
    tenant_id                bigint not null references tenants (id),
    connection_id            bigint not null,
    provider_transaction_id  text not null check (length(provider_transaction_id) between 1 and 200),
    booking_date             date not null,
    value_date               date,
    amount                   numeric(18, 4) not null,
    currency                 char(3) not null check (currency ~ '^[A-Z]{3}$'),
    counterparty_name        text,
    counterparty_account     text,
    variable_symbol          text,
    specific_symbol          text,
    constant_symbol          text,
    remittance_information   text,
    payment_key              text,
    match_state              text not null default 'UNMATCHED'
                                 check (match_state in ('UNMATCHED', 'SUGGESTED', 'MATCHED', 'IGNORED')),
    explanation              text,
    -- [{document_id, confidence, reason}], rewritten whenever the payment is re-examined
    suggestions              jsonb not null default '[]',
    ignored_reason           text,
    -- false once a person matched, unmatched or ignored it: automatic re-matching keeps off
    auto_match               boolean not null default true,
    decided_by               text,
    decided_at               timestamptz,
    received_at              timestamptz not null default now(),
    updated_at               timestamptz not null default now(),
    unique (connection_id, provider_transaction_id),
    unique (tenant_id, id),
    foreign key (tenant_id, connection_id) references bank_connections (tenant_id, id)
);
create index transactions_connection on transactions (tenant_id, connection_id, id);
create index transactions_open on transactions (tenant_id, received_at)
    where match_state in ('UNMATCHED', 'SUGGESTED') and auto_match and amount > 0;
create index transactions_booking on transactions (tenant_id, booking_date);

create table allocations (
    id              bigint generated always as identity primary key,
    tenant_id       bigint not null references tenants (id),
    transaction_id  bigint not null,
    document_id     bigint not null,
    amount          numeric(18, 4) not null check (amount > 0),
    currency        char(3) not null,
    rule            text,
    method          text not null check (method in ('AUTO', 'MANUAL')),
    created_at      timestamptz not null default now(),
    created_by      text,
    -- an unmatch reverses an allocation; the row stays as history
    reversed_at     timestamptz,
    reversed_by     text,
    -- Plain id references: the check is a primary-key probe whatever the statistics say
    -- (a composite (tenant, id) check was once planned onto another tenant index and
    -- scanned). The tenant is always the parent's: allocations are only written from rows
    -- read within the tenant.
    foreign key (transaction_id) references transactions (id),
    foreign key (document_id) references documents (id)
);
create index allocations_transaction on allocations (transaction_id);
create index allocations_document on allocations (document_id);

create table sync_runs (
    id             bigint generated always as identity primary key,
    tenant_id      bigint not null references tenants (id),
    connection_id  bigint not null,
    started_at     timestamptz not null default now(),
    finished_at    timestamptz,
    status         text not null check (status in ('RUNNING', 'SUCCEEDED', 'FAILED')),
    fetched        integer not null default 0,
    inserted       integer not null default 0,
    duplicates     integer not null default 0,
    matched        integer not null default 0,
    error          text,
    foreign key (tenant_id, connection_id) references bank_connections (tenant_id, id)
);
create index sync_runs_connection on sync_runs (tenant_id, connection_id, id);
create index sync_runs_list on sync_runs (tenant_id, id);

-- The outbox: written in the same transaction as the change it describes. `xid` lets readers
-- stay below the oldest running writer, since ids are handed out before commit.
create table events (
    id              bigint generated always as identity primary key,
    tenant_id       bigint not null references tenants (id),
    type            text not null,
    occurred_at     timestamptz not null default now(),
    transaction_id  bigint,
    document_id     bigint,
    connection_id   bigint,
    payload         jsonb not null default '{}',
    xid             xid8 not null default pg_current_xact_id()
);
create index events_tenant on events (tenant_id, id);

-- The open documents' references move out of the documents table into one row per open
-- document, kept by triggers. The matcher's partial indexes named `paid_amount < total` in
-- their predicate, which made paid_amount an indexed column: every paid-state update wrote
-- a new row version into every index of the table (HOT was impossible), and that update
-- cost as much as storing the payment (measured over a fresh table, four runs: 25-40 us
-- against 7-13 us per document for the same update without those indexes; in the ingest
-- benchmark its database time fell from 0.9 to 0.44 of the payments' COPY). Now a payment's update of a document is a
-- heap-only one, and paying a document in full deletes its row here (no index is touched
-- until vacuum). Lookups read only this table's indexes, so paid documents never crowd a
-- prefix scan, a partner's list or a reused symbol.
-- No document may be written between the backfill below and the triggers that keep the table
-- from then on (a replica still running the old code during a rollout would write one that
-- neither sees). Creating the triggers takes this lock anyway; taking it first closes the gap.
lock table documents in share row exclusive mode;

create table open_documents (
    document_id           bigint primary key,
    tenant_id             bigint not null,
    number_norm           text not null,
    order_number_norm     text,
    variable_symbol_norm  text,
    specific_symbol_norm  text,
    payment_key_norm      text,
    partner_id            bigint
);

insert into open_documents
select id, tenant_id, number_norm, order_number_norm, variable_symbol_norm,
       specific_symbol_norm, payment_key_norm, partner_id
from documents where paid_amount < total;

create index open_documents_number on open_documents (tenant_id, number_norm);
create index open_documents_order on open_documents (tenant_id, order_number_norm, document_id)
    where order_number_norm is not null;
create index open_documents_vs on open_documents (tenant_id, variable_symbol_norm)
    where variable_symbol_norm is not null;
create index open_documents_ss on open_documents (tenant_id, specific_symbol_norm)
    where specific_symbol_norm is not null;
create index open_documents_key on open_documents (tenant_id, payment_key_norm)
    where payment_key_norm is not null;
create index open_documents_partner on open_documents (tenant_id, partner_id, document_id)
    where partner_id is not null;
create index open_documents_number_prefix
    on open_documents (tenant_id, number_norm text_pattern_ops);
create index open_documents_number_suffix
    on open_documents (tenant_id, reverse(number_norm) text_pattern_ops);
create index open_documents_newest on open_documents (tenant_id, document_id);

-- Statement-level, over the statement's changed rows at once: a row trigger would run its
-- own queries once per document.
create function open_documents_sync() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        delete from open_documents o using old_rows r where o.document_id = r.id;
        return null;
    end if;
    if tg_op = 'UPDATE' then
        -- Paid in full: out. (Ids never change.)
        delete from open_documents o using new_rows n
        where o.document_id = n.id and not n.paid_amount < n.total;
        -- Still open or open again: in, with its references as they are now. An update that
        -- changed neither openness nor a reference (a partial payment) writes nothing here.
        insert into open_documents
        select n.id, n.tenant_id, n.number_norm, n.order_number_norm, n.variable_symbol_norm,
               n.specific_symbol_norm, n.payment_key_norm, n.partner_id
        from new_rows n join old_rows r on r.id = n.id
        where n.paid_amount < n.total
          and (not r.paid_amount < r.total
               or (r.tenant_id, r.number_norm, r.order_number_norm, r.variable_symbol_norm,
                   r.specific_symbol_norm, r.payment_key_norm, r.partner_id)
                  is distinct from
                  (n.tenant_id, n.number_norm, n.order_number_norm, n.variable_symbol_norm,
                   n.specific_symbol_norm, n.payment_key_norm, n.partner_id))
        on conflict (document_id) do update set
            tenant_id = excluded.tenant_id, number_norm = excluded.number_norm,
            order_number_norm = excluded.order_number_norm,
            variable_symbol_norm = excluded.variable_symbol_norm,
            specific_symbol_norm = excluded.specific_symbol_norm,
            payment_key_norm = excluded.payment_key_norm, partner_id = excluded.partner_id;
        return null;
    end if;
    insert into open_documents
    select n.id, n.tenant_id, n.number_norm, n.order_number_norm, n.variable_symbol_norm,
           n.specific_symbol_norm, n.payment_key_norm, n.partner_id
    from new_rows n where n.paid_amount < n.total;
    return null;
end
$$;

create trigger open_documents_insert after insert on documents
    referencing new table as new_rows
    for each statement execute function open_documents_sync();
create trigger open_documents_update after update on documents
    referencing old table as old_rows new table as new_rows
    for each statement execute function open_documents_sync();
create trigger open_documents_delete after delete on documents
    referencing old table as old_rows
    for each statement execute function open_documents_sync();

drop index documents_open_number;
drop index documents_open_order;
drop index documents_open_vs;
drop index documents_open_ss;
drop index documents_open_key;
drop index documents_open_partner;
drop index documents_open_number_prefix;
drop index documents_open_number_suffix;

-- Room on each page for one new version of each of its rows: every document is rewritten
-- when it is paid, and documents issued together are paid together (in the ingest
-- benchmark, one batch pays whole pages). At 85 only a quarter of those updates found room
-- and stayed heap-only, at 50 all did. A version that finds no room goes to another page
-- with an entry in every index, which takes about the same space.
alter table documents set (fillfactor = 50);

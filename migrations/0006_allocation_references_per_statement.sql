-- An allocation's payment and document are checked once per statement instead of once per
-- row. A foreign key runs two queries for each allocation written (one per parent), which
-- made the allocations' COPY the costliest write of the ingest after the payments' own: in
-- the ingest benchmark the database's CPU went from 1.15-1.22 s to 1.02-1.07 s per 20,000
-- payments (16,000 allocations) with the checks below, and to 0.94-0.98 s with none.
--
-- The checks keep what the foreign keys guaranteed:
-- * every allocation written names a payment and a document that exist, and locks them
--   against deletion until it commits (FOR KEY SHARE, the lock a foreign key takes);
-- * a payment or document that allocations name cannot be deleted, nor its id changed.
-- As with a foreign key under READ COMMITTED (the service's level), a delete racing an
-- allocation waits for its transaction, then sees the allocation and fails.

alter table allocations drop constraint allocations_transaction_id_fkey;
alter table allocations drop constraint allocations_document_id_fkey;

-- Both parents are locked in one statement. `= any(array)` keeps each lookup an index probe
-- of the parent's primary key, in id order: a transition table has no statistics, and a join
-- against it could be planned as a scan.
create function allocations_check_references() returns trigger language plpgsql as $$
declare
    payment_ids  bigint[] := array(select distinct transaction_id from new_rows);
    document_ids bigint[] := array(select distinct document_id from new_rows);
    missing      record;
begin
    if (with p as (select from transactions t where t.id = any(payment_ids) for key share of t),
             d as (select from documents d where d.id = any(document_ids) for key share of d)
        select (select count(*) from p) < cardinality(payment_ids)
            or (select count(*) from d) < cardinality(document_ids))
    then
        select * into missing from (
            select 1 as side, w as id from unnest(payment_ids) w
            where not exists (select from transactions t where t.id = w)
            union all
            select 2, w from unnest(document_ids) w
            where not exists (select from documents d where d.id = w)
        ) m order by side, id limit 1;
        raise exception using
            errcode = 'foreign_key_violation',
            table = 'allocations',
            constraint = case missing.side when 1 then 'allocations_transaction_id_check'
                                           else 'allocations_document_id_check' end,
            message = format('an allocation names %s %s, which does not exist',
                             case missing.side when 1 then 'payment' else 'document' end,
                             missing.id);
    end if;
    return null;
end
$$;

create trigger allocations_references_insert after insert on allocations
    referencing new table as new_rows
    for each statement execute function allocations_check_references();
-- Only an unmatch updates allocations (it marks them reversed), a few rows at a time.
create trigger allocations_references_update after update on allocations
    referencing new table as new_rows
    for each statement execute function allocations_check_references();

create function allocations_keep_parents() returns trigger language plpgsql as $$
declare
    column_name text := case tg_table_name when 'transactions' then 'transaction_id'
                                           else 'document_id' end;
    named bigint;
begin
    execute format(
        'select a.%I from allocations a where a.%I = any(array(select id from old_rows))'
        ' order by 1 limit 1',
        column_name, column_name)
    into named;
    if named is not null then
        raise exception using
            errcode = 'foreign_key_violation',
            table = tg_table_name,
            constraint = 'allocations_' || column_name || '_check',
            message = format('%s %s has allocations and cannot be deleted',
                             case tg_table_name when 'transactions' then 'payment'
                                                else 'document' end,
                             named);
    end if;
    return null;
end
$$;

create trigger transactions_keep_allocated after delete on transactions
    referencing old table as old_rows
    for each statement execute function allocations_keep_parents();
create trigger documents_keep_allocated after delete on documents
    referencing old table as old_rows
    for each statement execute function allocations_keep_parents();

-- Ids are identities and never change; refusing it outright keeps every reference valid
-- without a check on each paid-state update (the trigger fires only when an update names id).
create function refuse_id_change() returns trigger language plpgsql as $$
begin
    raise exception using
        errcode = 'foreign_key_violation',
        table = tg_table_name,
        message = format('the id of a row of %s never changes', tg_table_name);
end
$$;

create trigger transactions_id_fixed before update of id on transactions
    for each row when (old.id is distinct from new.id) execute function refuse_id_change();
create trigger documents_id_fixed before update of id on documents
    for each row when (old.id is distinct from new.id) execute function refuse_id_change();

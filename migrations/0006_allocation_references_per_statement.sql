-- An allocation's payment and document are checked once per statement instead of once per
-- row. A foreign key runs two queries for each allocation written (one per parent), which
-- made the allocations' COPY the costliest write of the ingest after the payments' own. In
-- the ingest benchmark (20,000 payments, 16,000 allocations; 8 rounds of each, interleaved)
-- the database's CPU was 1.00-1.13 s with the foreign keys, 0.92-1.01 s with the checks
-- below, 0.86-0.98 s with no check at all.
--
-- The checks keep what the foreign keys guaranteed, under the names they had:
-- * every allocation written names a payment and a document that exist, and locks them
--   against deletion until it commits (FOR KEY SHARE, the lock a foreign key takes);
-- * a payment or document that allocations name cannot be deleted or truncated;
-- * ids, and an allocation's payment and document, never change (an unmatch marks the
--   allocation reversed; matching again books a new one), so no update needs a check.
-- As with a foreign key under READ COMMITTED (the service's level), a delete racing an
-- allocation waits for its transaction, then sees the allocation and fails. A foreign key
-- also checks a delete under an older snapshot (REPEATABLE READ, SERIALIZABLE) against rows
-- committed since; a trigger cannot, so such deletes are refused. Nothing in the service
-- deletes payments or documents at all.

alter table allocations drop constraint allocations_transaction_id_fkey;
alter table allocations drop constraint allocations_document_id_fkey;

-- Each parent is an index probe of its primary key, locked as it is found, in id order: a
-- lateral probe per id, since with many ids a plain join or `= any(array)` may be planned as
-- a scan of the whole parent table (seen at 16,000 ids). The missing ids come from the same
-- statement that locks the rest, so a parent that appears meanwhile cannot go unreported.
create function allocations_check_references() returns trigger language plpgsql as $$
declare
    payment_ids  bigint[] := array(select distinct transaction_id from new_rows order by 1);
    document_ids bigint[] := array(select distinct document_id from new_rows order by 1);
    missing_payment  bigint;
    missing_document bigint;
    missing          bigint;
    parent           text;
    column_name      text;
    noun             text;
begin
    select min(w.id) filter (where t.id is null) into missing_payment
    from unnest(payment_ids) w(id) left join lateral (
        select t.id from transactions t where t.id = w.id for key share of t) t on true;
    select min(w.id) filter (where d.id is null) into missing_document
    from unnest(document_ids) w(id) left join lateral (
        select d.id from documents d where d.id = w.id for key share of d) d on true;
    if missing_payment is not null then
        missing := missing_payment;
        parent := 'transactions';
        column_name := 'transaction_id';
        noun := 'payment';
    elsif missing_document is not null then
        missing := missing_document;
        parent := 'documents';
        column_name := 'document_id';
        noun := 'document';
    else
        return null;
    end if;
    raise exception using
        errcode = 'foreign_key_violation',
        table = 'allocations',
        constraint = format('allocations_%s_fkey', column_name),
        message = format('an allocation names %s %s, which does not exist', noun, missing),
        detail = format('Key (%s)=(%s) is not present in table "%s".',
                        column_name, missing, parent);
end
$$;

create trigger allocations_references_insert after insert on allocations
    referencing new table as new_rows
    for each statement execute function allocations_check_references();

create function allocations_keep_parents() returns trigger language plpgsql as $$
declare
    column_name text := case tg_table_name when 'transactions' then 'transaction_id'
                                           else 'document_id' end;
    noun text := case tg_table_name when 'transactions' then 'payment' else 'document' end;
    named bigint;
begin
    if tg_op = 'TRUNCATE' then
        if exists (select from allocations) then
            raise exception using
                errcode = 'foreign_key_violation',
                table = 'allocations',
                constraint = 'allocations_' || column_name || '_fkey',
                message = format('%s cannot be truncated while allocations name them: '
                                 'truncate allocations first', tg_table_name);
        end if;
        return null;
    end if;
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            table = tg_table_name,
            message = format('a %s can only be deleted under READ COMMITTED: an older '
                             'snapshot would not see allocations written since', noun);
    end if;
    execute format(
        'select a.%I from allocations a where a.%I = any(array(select id from old_rows))'
        ' order by 1 limit 1',
        column_name, column_name)
    into named;
    if named is not null then
        raise exception using
            errcode = 'foreign_key_violation',
            table = 'allocations',
            constraint = 'allocations_' || column_name || '_fkey',
            message = format('%s %s has allocations and cannot be deleted', noun, named),
            detail = format('Key (%s)=(%s) is still referenced from table "allocations".',
                            column_name, named);
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
create trigger transactions_truncate_allocated before truncate on transactions
    for each statement execute function allocations_keep_parents();
create trigger documents_truncate_allocated before truncate on documents
    for each statement execute function allocations_keep_parents();

-- What references name never changes: refusing a change outright keeps every reference
-- valid without a check on each update (these fire only when an update names the columns,
-- which no paid-state update or unmatch does). The argument says what may not change.
create function refuse_change() returns trigger language plpgsql as $$
begin
    raise exception using
        errcode = 'foreign_key_violation',
        table = tg_table_name,
        message = format('the %s of a row of %s never changes', tg_argv[0], tg_table_name);
end
$$;

create trigger transactions_id_fixed before update of id on transactions
    for each row when (old.id is distinct from new.id) execute function refuse_change('id');
create trigger documents_id_fixed before update of id on documents
    for each row when (old.id is distinct from new.id) execute function refuse_change('id');
create trigger allocations_references_fixed
    before update of transaction_id, document_id on allocations
    for each row when ((old.transaction_id, old.document_id)
                       is distinct from (new.transaction_id, new.document_id))
    execute function refuse_change('payment or document');

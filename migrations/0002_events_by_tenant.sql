-- The outbox is written and read per tenant only, so one index keyed (tenant_id, id) serves
-- every access; keeping a second one on id alone doubled the index writes of each event.
-- Like the event's other references (payment, document, connection), its tenant is a plain
-- value rather than a foreign key: every writer has the tenant's row in hand already, tenants
-- are never deleted, and the per-row check cost more than the row itself.
alter table events drop constraint events_tenant_id_fkey;
alter table events drop constraint events_pkey;
drop index events_tenant;
alter table events add primary key (tenant_id, id);

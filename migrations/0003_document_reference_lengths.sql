-- The lengths of each tenant's document references (numbers, order numbers and symbols).
-- A near-miss probe for a reference cannot find a document unless some reference is within
-- one character of its length: the matcher's query skips every other probe (most words with
-- digits in a payment's text), as the in-memory index does. Lengths are only ever added; one
-- no document has any more costs a wasted probe, never a missed document.
create table document_reference_lengths (
    tenant_id  bigint not null references tenants (id),
    length     integer not null check (length > 0),
    primary key (tenant_id, length)
);

insert into document_reference_lengths (tenant_id, length)
select distinct d.tenant_id, length(r.v)
from documents d
cross join lateral unnest(array[d.number_norm, d.order_number_norm, d.variable_symbol_norm,
                                d.specific_symbol_norm]) as r(v)
where r.v is not null;

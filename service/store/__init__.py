"""SQL lives here and only here: one module per table family, asyncpg throughout.

Every function takes the connection it runs on (so callers choose the transaction) and,
for tenant data, the tenant id it is scoped to.
"""

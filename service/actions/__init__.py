"""Use cases: each opens its transaction, checks its input, calls the domain and the store.

The API and the command line call these; they never write SQL themselves.
"""

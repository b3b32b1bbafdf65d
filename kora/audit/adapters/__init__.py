"""Audit adapters: the SQL trail and its queries, the in-memory fake, tables and DDL."""

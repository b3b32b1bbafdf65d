"""Adapters of the events module: SQL (outbox, embedded stream, processed events, dead letters)
and NATS JetStream."""

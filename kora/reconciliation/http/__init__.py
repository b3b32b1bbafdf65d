"""The reconciliation service's HTTP API (`kora recon serve`): its own FastAPI app on its own
database, people authenticated with the core's access tokens. Never imports kora.http."""

"""Technical platform shared by every module: settings, database engine and metadata,
the unit of work. No business rules live here."""

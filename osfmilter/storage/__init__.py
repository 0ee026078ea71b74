"""Everything osfmilter keeps in SQL: schema, engine, lookups and records."""

"""Reference tables (ISO 4217, ISO 3166-1, ISO 639-1, IANA time zones) kept as literals in the package."""

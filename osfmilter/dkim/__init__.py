"""DKIM signing: canonicalization, signatures, key files and published records."""

"""A customer's domains: verified or pending, and the records a customer publishes.

:mod:`.rules` is pure (the record to publish, the token, what a TXT answer
proves, which domains nest); :mod:`.verify` asks DNS; :mod:`.advisor` puts
the records a domain needs together (docs/domains.rst).
"""

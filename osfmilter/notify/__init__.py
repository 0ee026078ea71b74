"""Telling customers what happens to their mail (README.rst, 'Notifications').

``notices`` is what a notification says (pure: the milter builds them);
``webhook`` and ``email`` how each channel carries one; ``sender`` the
process (``osfmilter notify run``) that delivers the outbox.
"""

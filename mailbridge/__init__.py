"""mailbridge: a support mailbox turned into a ticket system."""

__version__ = "0.1.0"

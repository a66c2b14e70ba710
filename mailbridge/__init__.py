"""mailbridge: a support mailbox turned into a ticket system.

The distribution is `crossec-mailbridge` (pyproject.toml reads its version from here);
the import package and the command are `mailbridge`.
"""

__version__ = "0.1.0"

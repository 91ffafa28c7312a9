"""Pure translation of virtual objects to host objects (plain REST dicts, no I/O)."""

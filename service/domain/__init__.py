"""Pure domain logic: money, references, matching. No I/O lives here."""

"""Every write offline-fix makes: plan, guard, back up, journal, apply, verify independently,
roll back on mismatch, undo byte for byte. See engine.py for the sequence."""

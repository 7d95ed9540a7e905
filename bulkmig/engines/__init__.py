"""Engine packages: one per database engine, holding what differs between engines as data."""

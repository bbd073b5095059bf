"""Alert drills on the native stack, one per fault-flag scenario (marker ``scenarios``)."""

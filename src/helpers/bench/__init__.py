"""The performance chapter: its sections, the timing harness, FLOP counts, peers and reference attacks."""

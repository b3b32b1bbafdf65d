"""The chaos test's world, workload and checks (tests/integration/test_chaos_simulator.py)."""

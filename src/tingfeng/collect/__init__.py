"""Collecting: the fetcher, the connectors, the scheduler and source health."""

"""The serve stage: the read API (statistics, high-level events) behind each tenant's read key."""

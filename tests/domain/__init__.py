"""Domain tests: the pure core, no AWS, no HTTP, no clock."""

"""The exchange: contracts, publications, facts, policy and the onceonly CLI."""

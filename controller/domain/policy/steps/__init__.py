"""The ladder's steps, one module each; their order is `policy.ladder.LADDER`."""

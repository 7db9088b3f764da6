"""The `amber` command line. The library never imports this package."""

"""HTTP routes: thin functions from a parsed request to a data-layer call."""

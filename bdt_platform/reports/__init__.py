"""Reports analysts read and quote, built from the warehouse marts."""

"""One module per automation; each flow calls tasks in order."""

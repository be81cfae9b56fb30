"""Runtime helpers: ordinary Python functions that generated modules contain verbatim."""

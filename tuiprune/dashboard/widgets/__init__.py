"""The dashboard's widgets, one feature each; they draw from a shared :class:`Context`."""

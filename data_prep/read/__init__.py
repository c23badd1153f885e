"""Reading inputs: sources and their listing, readers per format, compressed streams."""

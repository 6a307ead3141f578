"""d4c: release system for Data for Canada open geospatial datasets."""
__version__ = "0.1.0"

"""Command-line tools, installed by pip as console scripts (setup.py): jaxmd-efield-make-data,
jaxmd-efield-train and jaxmd-efield-predict. Each module's `main(argv)` is the entry point."""

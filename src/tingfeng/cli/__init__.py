"""The command line (`tingfeng …`)."""

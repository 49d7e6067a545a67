"""The web application and the REST API."""

"""The web page: server-rendered views over the same service functions as the JSON API."""

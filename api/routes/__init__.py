"""HTTP routes: parse, call worker.service, respond."""

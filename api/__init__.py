"""rerankq's HTTP front door: routes and schemas over worker.service; never imports torch."""

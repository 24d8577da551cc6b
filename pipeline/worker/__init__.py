"""What runs only inside a celery worker: consumer, pool, warm-up, intake gate, FIFO gate."""

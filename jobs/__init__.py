"""Background work: queue names and enqueueing, the job function, and safe fetching."""

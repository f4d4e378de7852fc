"""The worker side: submission and job state (shared with the web), the page job, safe
fetching (fetch/) and the runtime that runs jobs (worker/, `python -m jobs.worker`)."""

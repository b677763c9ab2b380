"""The online door: ``scoring serve JOB`` scores requests with the kernels the nightly run uses."""

"""What each worker instance tells the application about itself on `<application_id>-metadata`:
the status record (`record`), how every field of one read from the topic is validated
(`fields`), and how statuses are signed when the HTTP token is set (`signing`). Written by the
runtime, read by the runtime and by the query client; depends on nothing above it."""

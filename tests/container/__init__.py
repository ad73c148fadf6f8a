"""The Dockerfile, built and run with podman (run.sh does the work)."""

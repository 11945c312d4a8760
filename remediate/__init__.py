"""remediate: declarative, previewable remediation of Docker Compose hosts over SSH (README "How it is built")."""

"""What remediate reads from disk, validated before any host is contacted: inventories and playbooks (YAML with
file:line for every field), schema checks, Jinja2 templating, and where files are found."""

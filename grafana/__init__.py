"""Grafana provisioning, dashboards and their generator (``grafana.dashgen``).

A regular package rather than a namespace one, so that an installed distribution named
``grafana`` can never shadow the generator.
"""

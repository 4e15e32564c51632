"""The role engine: an Ansible subset (plays, roles, modules) that real Ansible also accepts.

    from labctl.engine import deploy, DeployOptions
    result = deploy(inventory, pool, "site.yml", DeployOptions(check=True, diff=True))

Layout: ``loader`` (site and roles → ``model``), ``variables`` (precedence),
``templating``/``filters`` (jinja2, StrictUndefined), ``selection`` (tags),
``executor`` (one play on one host), ``actions`` (controller-side modules),
``hostrunner`` (the stdlib-only module runner pushed to hosts), ``transport`` (its
JSON-lines session), ``output`` (text/JSON and the recap), ``run`` (``deploy()``).
"""

from labctl.engine.run import DeployOptions, RunResult, deploy

__all__ = ["DeployOptions", "RunResult", "deploy"]

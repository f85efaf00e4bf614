"""The workbench: the broker's web UI, served by the broker at ``/ui/`` (``/`` leads there).

Pages are rendered on the server with Jinja2 (:mod:`broker.web.render`) from the same services
the REST API calls, with the same guard: what a caller may not read is a 404 page here too. A
browser is signed in by the ``submarine_broker_token`` cookie the sign-in page sets (``/ui/`` is
one of :data:`broker.api.access.COOKIE_PATHS`); every form that changes something carries a CSRF
token (:mod:`broker.web.csrf`). Scripts are small and progressive (``static/app.js``): a page
works without them, they add live updates, local times and charts. Nothing is fetched from
another site: the templates, styles and scripts are files of this package.
"""

"""Serving: the Flask app (this package) and the HTTP server it runs on (`serving/http/`, no Flask).

    gunicorn 'fmnist.serving:create_app()'      # what `fmnist serve` runs, with serving/http/gunicorn_conf.py

The app's rooms: `app` (the factory), `pipeline` (the stages of a prediction, no Flask), the views
(`predict`, `explain`, `v2`, `health`, `monitoring`, `openapi`), `fastpath` (the common multipart
/predict before Flask), `state` (what one worker holds), `contract` (the /predict request contract),
`multipart`, `reqlog`, `errors` (Flask's error handlers) and `apierror` (the one JSON error shape, shared
with the server).
"""


def create_app(config=None):
    """The Flask app (see fmnist.serving.app.create_app); imported on call, so that importing the HTTP
    server (fmnist.serving.http) never imports Flask."""
    from fmnist.serving.app import create_app as _create_app

    return _create_app(config)

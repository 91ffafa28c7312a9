import kubernetes.client
import kubernetes.client.api
import kubernetes.client.models

pytest_plugins = ["pytester"]

# kubernetes >= 35 imports its API and model modules lazily. An in-process pytester run drops
# the modules first imported inside it; a model class imported again afterwards is a second
# class, which the client's pydantic checks refuse ("Input should be a valid dictionary or
# instance of V1Service"). Import them all before any test (~1 s) so every run shares them.
for _package in (kubernetes.client.models, kubernetes.client.api, kubernetes.client):
    for _name in getattr(_package, "__all__", ()):
        getattr(_package, _name, None)

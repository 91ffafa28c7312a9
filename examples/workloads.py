"""Containers the examples run (plain dicts, as you would write them in a manifest)."""


def web_container(image: str, text: str = "hello from busybox") -> dict:
    """A container serving ``text`` over HTTP on port 8080."""
    return {
        "name": "web",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "sh",
            "-c",
            f"mkdir -p /www && echo '{text}' > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }

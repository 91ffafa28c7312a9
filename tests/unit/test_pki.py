from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pytest_vcluster.pki import CertificateAuthority, service_account_key


def test_issued_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority("test-ca")
    server = ca.issue("apiserver", dns=("kubernetes",), ips=("127.0.0.1",), server=True)
    client = ca.issue("admin", orgs=("system:masters",), client=True)
    ca_cert = x509.load_pem_x509_certificate(ca.pair.cert_pem)
    for pair, usage in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, None)):
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        cert.verify_directly_issued_by(ca_cert)  # raises if the signature is wrong
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert (usage or ExtendedKeyUsageOID.CLIENT_AUTH) in eku
    cert = x509.load_pem_x509_certificate(client.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    san = x509.load_pem_x509_certificate(server.cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "kubernetes" in san.value.get_values_for_type(x509.DNSName)
    crt, key = server.write(tmp_path, "apiserver")
    assert crt.read_bytes() == server.cert_pem
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_different_ca_with_the_same_name_does_not_verify() -> None:
    from cryptography.exceptions import InvalidSignature

    a, b = CertificateAuthority("same"), CertificateAuthority("same")
    leaf = x509.load_pem_x509_certificate(a.issue("x", client=True).cert_pem)
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(b.pair.cert_pem))


def test_service_account_key_pair_matches() -> None:
    from cryptography.hazmat.primitives import serialization

    private_pem, public_pem = service_account_key()
    priv = serialization.load_pem_private_key(private_pem, None)
    pub = serialization.load_pem_public_key(public_pem)
    assert isinstance(priv, ec.EllipticCurvePrivateKey)
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    assert priv.public_key().public_numbers() == pub.public_numbers()


def test_api_server_names_are_one_list_for_both_runtimes() -> None:
    from pytest_vcluster.hosts.incluster.chart import api_server_sans
    from pytest_vcluster.pki import api_server_names, service_ip_sans

    common = api_server_names()
    assert common[0] == "localhost"
    assert "kubernetes.default.svc.cluster.local" in common
    chart = api_server_sans("vc1", "vcluster-vc1")
    assert set(common) < set(chart)
    assert "vc1.vcluster-vc1.svc" in chart
    assert service_ip_sans("10.96.0.0/12") == ("127.0.0.1", "10.96.0.1")


def test_a_strict_tls_client_accepts_the_server_certificate(tmp_path: Path) -> None:
    """Python 3.13's default context verifies in OpenSSL's strict mode (key identifiers
    required): a handshake on loopback with that flag set, whichever Python runs this."""
    import socket
    import ssl
    import threading

    ca = CertificateAuthority("strict-ca")
    crt, key = ca.issue("apiserver", ips=("127.0.0.1",), server=True).write(tmp_path, "server")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.pair.cert_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            with conn, server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
        t.join(10)

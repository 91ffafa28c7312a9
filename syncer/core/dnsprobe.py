"""Does the vcluster's DNS Service answer from inside the pod network?

A host Service with a ready endpoint is not yet a Service a pod can use: kube-proxy programs the
node's rules a moment later (its sync period), and until then the ClusterIP rejects packets, so
a pod started right after the vcluster was reported ready failed its first lookup ("Temporary
failure in name resolution"). The syncer runs in the pod network, so it asks the DNS Service
itself, the way a pod would, and the plugin waits for that (``/readyz/dns``).
"""

from __future__ import annotations

import os
import socket
import struct

QTYPE_A = 1


def query_packet(name: str, qid: int, qtype: int = QTYPE_A) -> bytes:
    """A recursive DNS query for ``name`` (RFC 1035 4.1)."""
    labels = [p for p in name.rstrip(".").split(".") if p]
    if any(len(p) > 63 for p in labels):
        raise ValueError(f"DNS label over 63 bytes in {name!r}")
    qname = b"".join(bytes([len(p)]) + p.encode("ascii") for p in labels) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def answer_problem(packet: bytes, qid: int) -> str:
    """ "" when ``packet`` answers query ``qid`` with NOERROR and at least one record, else why
    not."""
    if len(packet) < 12:
        return f"short DNS reply ({len(packet)} bytes)"
    rid, flags, _, ancount = struct.unpack(">HHHH", packet[:8])
    if rid != qid:
        return f"reply to another query (id {rid}, asked {qid})"
    if not flags & 0x8000:
        return "not a DNS reply"
    rcode = flags & 0xF
    if rcode:
        names = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
        return f"DNS answered {names.get(rcode, f'rcode {rcode}')}"
    if ancount == 0:
        return "DNS answered with no records"
    return ""


def probe(server: str, name: str, timeout: float = 1.0, port: int = 53) -> str:
    """Ask ``server`` for ``name`` over UDP: "" when it answers, else the reason. The socket is
    connected, so a rejected packet (no rules yet: ICMP port unreachable) reads as refused at
    once instead of as a timeout."""
    qid = int.from_bytes(os.urandom(2), "big")
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((server, port))
            s.send(query_packet(name, qid))
            while True:
                problem = answer_problem(s.recv(4096), qid)
                if not problem.startswith("reply to another query"):
                    return problem
        except TimeoutError:
            return f"no DNS answer from {server}:{port} within {timeout:g}s"
        except OSError as exc:
            return f"DNS query to {server}:{port} failed: {exc.strerror or exc}"

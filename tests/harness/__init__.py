"""Reusable integration-test harness: a private Postfix, an SMTP sink,
an SMTP client with XCLIENT support and a TCP proxy that can cut
connections. Everything listens on loopback only.
"""

from tests.harness.ports import free_dual_stack_port, free_port, ipv6_loopback_available
from tests.harness.postfix import PostfixInstance, postfix_knows_parameter, postfix_milter_spec
from tests.harness.sink import Sink, SinkMessage, message_id_of, normalize_message_id
from tests.harness.smtpclient import Client, Reply, Result, make_message, send, xtext
from tests.harness.tcpproxy import TcpProxy

__all__ = [
    "Client",
    "PostfixInstance",
    "Reply",
    "Result",
    "Sink",
    "SinkMessage",
    "TcpProxy",
    "free_dual_stack_port",
    "free_port",
    "ipv6_loopback_available",
    "make_message",
    "message_id_of",
    "normalize_message_id",
    "postfix_knows_parameter",
    "postfix_milter_spec",
    "send",
    "xtext",
]

"""A test SMTP relay that wants TLS and a login, like a mail provider's submission port:
aiosmtpd with STARTTLS (required before MAIL) or implicit TLS, AUTH PLAIN/LOGIN for one
account, and a Maildir for what it accepts.

Usage: secure_relay.py starttls|tls PORT CERT KEY MAILDIR USER PASSWORD
"""
import ssl
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

# The implicit-TLS port requires AUTH with `auth_require_tls` off (see below): it is TLS anyway.
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
mode, port, cert, key, maildir, user, password = sys.argv[1:8]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False)


common = dict(authenticator=authenticate, auth_required=True, auth_require_tls=True)
if mode == "starttls":
    controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port),
                            tls_context=context, require_starttls=True, **common)
else:
    # aiosmtpd counts only STARTTLS as TLS for `auth_require_tls`; this port is TLS throughout.
    controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port),
                            ssl_context=context, **dict(common, auth_require_tls=False))
controller.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    controller.stop()

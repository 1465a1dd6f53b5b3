"""A real SMTP server on a free port of 127.0.0.1 for tests, keeping every message it receives.

Python 3.11's standard ``smtpd`` (deprecated, still shipped) on its ``asyncore`` loop, in a
thread: no dependency. (aiosmtpd would replace it on Python 3.12+.)
"""

import email
import email.policy
import threading
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore
    import smtpd


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage

    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()

    def attachments(self) -> dict[str, str]:
        return {part.get_filename(): part.get_content()
                for part in self.message.iter_attachments()}


class Receiver:
    def __init__(self):
        self.messages: list[Received] = []
        self._map: dict = {}
        outer = self

        class Server(smtpd.SMTPServer):
            def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
                parsed = email.message_from_bytes(data, policy=email.policy.default)
                outer.messages.append(Received(mailfrom, list(rcpttos), parsed))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._server = Server(("127.0.0.1", 0), None, decode_data=False, map=self._map)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=asyncore.loop, kwargs={"timeout": 0.05, "map": self._map}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)

"""chronicle's CloudEvents over HTTP against the official Python SDK (`cloudevents` 2.x).

Run by the Rust test tests/it/cloudevents/interop.rs; nothing here is chronicle's code.
The HTTP side is the standard library (urllib, http.server); the SDK does every
encoding and decoding of events.

    cloudevents_peer.py check          exits 0 when the SDK imports
    cloudevents_peer.py send URL       posts the SENT events, in their modes; prints one
                                       JSON line per post: {"id", "mode", "status"}
    cloudevents_peer.py serve          an echo receiver on 127.0.0.1: prints its port, then
                                       answers each event with a structured CloudEvent whose
                                       data describes what the SDK parsed
    cloudevents_peer.py request URL MODE
                                       posts a question in MODE (structured or binary),
                                       parses the answer with the SDK, prints it as JSON
"""

import base64
import json
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings.http import HTTPMessage
from cloudevents.core.v1.event import CloudEvent

CORE = {"specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time"}
TIME = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)


def describe(event):
    """An event as plain JSON: its attributes, extensions and data (tagged by kind)."""
    attributes = dict(event.get_attributes())
    described = {name: attributes.get(name) for name in CORE}
    if isinstance(described["time"], datetime):
        described["time"] = described["time"].isoformat().replace("+00:00", "Z")
    described["extensions"] = {k: v for k, v in attributes.items() if k not in CORE}
    data = event.get_data()
    if data is None:
        described["data"] = None
    elif isinstance(data, (bytes, bytearray)):
        described["data"] = {"base64": base64.b64encode(data).decode("ascii")}
    elif isinstance(data, str):
        described["data"] = {"text": data}
    else:
        described["data"] = {"json": data}
    return described


def sent():
    """The events `send` posts, with their modes."""
    def event(attributes, data):
        return CloudEvent({"source": "/python/sender", "time": TIME, **attributes}, data)

    return [
        ("structured", event({
            "type": "com.example.py.structured", "id": "py-structured-1", "subject": "py-1",
            "datacontenttype": "application/json", "pyext": "hello", "pynum": 42, "pyflag": True,
        }, {"greeting": "hello", "n": [1, 2]})),
        ("binary", event({
            "type": "com.example.py.binary", "id": "py-binary-1", "subject": "py-2 \u2713 \u00fcn\u00ef",
            "datacontenttype": "application/json", "pyext": "100% \"quoted\"",
        }, {"greeting": "h\u00e9llo"})),
        ("binary", event({
            "type": "com.example.py.text", "id": "py-binary-text", "subject": "py-3",
            "datacontenttype": "text/plain; charset=utf-8",
        }, "hello, chronicle \u2713")),
        ("structured", event({
            "type": "com.example.py.bytes", "id": "py-structured-bytes", "subject": "py-4",
            "datacontenttype": "application/octet-stream",
        }, bytes([0, 1, 254, 255]))),
        ("binary", event({
            "type": "com.example.py.bytes", "id": "py-binary-bytes", "subject": "py-5",
            "datacontenttype": "application/octet-stream",
        }, bytes([0, 255, 254]))),
    ]


def post(url, message):
    """POSTs an HTTPMessage; returns (status, lower-cased headers, body)."""
    request = urllib.request.Request(url, data=message.body, headers=message.headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def encode(event, mode):
    return ce_http.to_binary_event(event) if mode == "binary" else ce_http.to_structured_event(event)


def send(url):
    for mode, event in sent():
        status, _, body = post(url, encode(event, mode))
        print(json.dumps({"id": event.get_id(), "mode": mode, "status": status,
                          "body": body.decode("utf-8", "replace")}), flush=True)


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = ce_http.from_http_event(HTTPMessage(headers=headers, body=body))
        except Exception as error:  # the SDK could not parse it: say so
            self.answer(400, {"content-type": "text/plain"}, str(error).encode("utf-8"))
            return
        seen = describe(event)
        seen["mode"] = "binary" if any(k.startswith("ce-") for k in headers) else "structured"
        reply = CloudEvent({
            "type": "com.example.py.echo", "source": "/python/receiver",
            "id": "echo-" + event.get_id(), "time": TIME, "datacontenttype": "application/json",
        }, seen)
        message = ce_http.to_structured_event(reply)
        self.answer(200, message.headers, message.body)

    def answer(self, status, headers, body):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def request(url, mode):
    question = CloudEvent({
        "type": "com.example.question", "source": "/python/asker", "id": "py-q-" + mode,
        "subject": "life", "time": TIME, "datacontenttype": "application/json",
    }, {"q": "the answer?"})
    status, headers, body = post(url, encode(question, mode))
    answer = ce_http.from_http_event(HTTPMessage(headers=headers, body=body))
    print(json.dumps({"status": status, "content_type": headers.get("content-type"),
                      "event": describe(answer)}), flush=True)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "check":
        sys.exit(0)
    elif command == "send":
        send(sys.argv[2])
    elif command == "serve":
        serve()
    elif command == "request":
        request(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + command)

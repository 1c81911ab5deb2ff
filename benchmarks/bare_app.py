"""The baseline: a bare Flask JSON endpoint, served the same way as the twin."""

from flask import Flask, jsonify, request

app = Flask("bare")


@app.post("/chat")
def chat():
    body = request.get_json()
    return jsonify(response=body.get("message", ""), session_id="bare", history_loaded=True, history_saved=True)


@app.get("/health")
def health():
    return jsonify(status="ok")

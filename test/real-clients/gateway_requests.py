"""Python's requests against `nle gateway`: chat completions and the Responses API, whole and
streamed, and each error with its status and body. Driven by test/real-clients-gateway.test.ts.

Reads {base, token, longPrompt} as JSON on stdin; prints one JSON object of what it saw.
"""
import json
import sys

import requests

job = json.load(sys.stdin)
base = job["base"]
auth = {"Authorization": f"Bearer {job['token']}"}
out = {"requests": requests.__version__}
user = [{"role": "user", "content": "Is my visit covered?"}]


def post(path, body, stream=False):
    return requests.post(base + path, json=body, headers=auth, stream=stream, timeout=120)


def error(res):
    return {"status": res.status_code, "contentType": res.headers.get("content-type"), "retry": res.headers.get("x-should-retry"), "body": res.json()}


def sse(res):
    """Every SSE event as (event name or None, data), read line by line as they arrive."""
    events, name, data = [], None, []
    for line in res.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        events.append((name, "\n".join(data)))
    return events


# Chat completions, whole.
res = post("/chat/completions", {"model": "whatever", "messages": user, "max_tokens": 4})
whole = res.json()
out["chat"] = {"status": res.status_code, "object": whole["object"], "model": whole["model"], "fingerprint": whole.get("system_fingerprint"), "content": whole["choices"][0]["message"]["content"], "finish": whole["choices"][0]["finish_reason"], "usage": whole["usage"]}

# Chat completions, streamed, with include_usage.
res = post("/chat/completions", {"messages": user, "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}, stream=True)
events = sse(res)
chunks = [json.loads(d) for _, d in events if d != "[DONE]"]
out["chatStream"] = {
    "status": res.status_code,
    "contentType": res.headers.get("content-type"),
    "last": events[-1][1],
    "usageKeys": [("usage" in c, c.get("usage") is None) for c in chunks],
    "finalUsage": chunks[-1].get("usage"),
    "finalChoices": chunks[-1]["choices"],
    "text": "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]),
    "fingerprints": sorted({c.get("system_fingerprint") for c in chunks}),
    "models": sorted({c["model"] for c in chunks}),
}

# Responses API, whole and streamed.
res = post("/responses", {"model": "whatever", "input": "Is my visit covered?", "instructions": "Answer briefly.", "max_output_tokens": 4})
r = res.json()
out["responses"] = {"status": res.status_code, "object": r["object"], "state": r["status"], "model": r["model"], "output": r["output"], "usage": r["usage"], "incomplete": r["incomplete_details"]}
res = post("/responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "Is my visit covered?"}]}], "max_output_tokens": 4, "stream": True}, stream=True)
events = sse(res)
datas = [json.loads(d) for _, d in events]
out["responsesStream"] = {
    "status": res.status_code,
    "contentType": res.headers.get("content-type"),
    "names": [n for n, _ in events],
    "typesMatch": all(n == d["type"] for (n, _), d in zip(events, datas)),
    "sequence": [d["sequence_number"] for d in datas],
    "deltas": "".join(d["delta"] for d in datas if d["type"] == "response.output_text.delta"),
    "doneText": next((d["text"] for d in datas if d["type"] == "response.output_text.done"), None),
    "final": datas[-1]["response"] if datas and "response" in datas[-1] else None,
}

# Errors, each with its status and OpenAI's error body.
long_chat = [{"role": "user", "content": job["longPrompt"]}]
out["errors"] = {
    "contextWhole": error(post("/chat/completions", {"messages": long_chat})),
    "contextStream": error(post("/chat/completions", {"messages": long_chat, "stream": True}, stream=True)),
    "contextResponses": error(post("/responses", {"input": job["longPrompt"], "stream": True}, stream=True)),
    "responseFormat": error(post("/chat/completions", {"messages": user, "response_format": {"type": "json_object"}})),
    "responseFormatStream": error(post("/chat/completions", {"messages": user, "stream": True, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, stream=True)),
    "maxTokens": error(post("/chat/completions", {"messages": user, "max_tokens": 100000})),
    "tools": error(post("/chat/completions", {"messages": user, "tools": [{"type": "function", "function": {"name": "f"}}]})),
    "image": error(post("/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]})),
    "previousResponse": error(post("/responses", {"input": "x", "previous_response_id": "resp_123"})),
    "unauthorized": error(requests.get(base + "/models", timeout=30)),
    "unknownModel": error(requests.get(base + "/models/gpt-4o", headers=auth, timeout=30)),
}

# A conversation that carries an earlier tool call and its result, with no tools on offer: accepted.
res = post("/chat/completions", {"max_tokens": 2, "messages": user + [
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "covered"},
]})
out["toolMessage"] = {"status": res.status_code, "object": res.json().get("object")}

res = requests.get(base + "/models", headers=auth, timeout=30)
out["models"] = {"status": res.status_code, "body": res.json()}
print(json.dumps(out))

"""Drives `ask serve` with the official `openai` Python package.

Usage: openai_client.py BASE_URL CHAT_MODEL
Prints one JSON object with what each call returned, for the Rust test to
check: the model list, a whole and a streamed answer from the index with
their sources, plain chat with CHAT_MODEL, embeddings (the client asks for
base64 and decodes it), and the errors of bad requests as the client
raises them.
"""
import json
import sys

import openai
from openai import OpenAI

base, chat_model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
question = [{"role": "user", "content": "When is the security deposit returned?"}]
out = {}

out["models"] = [m.id for m in client.models.list()]

whole = client.chat.completions.create(model="ask", messages=question, max_tokens=24)
out["whole"] = {
    "content": whole.choices[0].message.content,
    "finish_reason": whole.choices[0].finish_reason,
    "sources": (whole.model_extra or {}).get("sources"),
    "completion_tokens": whole.usage.completion_tokens,
}

pieces, finish, sources, usage = [], None, None, None
stream = client.chat.completions.create(
    model="ask", messages=question, max_tokens=24, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.completion_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
            sources = (chunk.model_extra or {}).get("sources")
out["stream"] = {"content": "".join(pieces), "pieces": len(pieces), "finish_reason": finish, "sources": sources, "completion_tokens": usage}

plain = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "What is the capital of France?"}],
    max_tokens=8,
)
out["plain"] = {"content": plain.choices[0].message.content, "sources": (plain.model_extra or {}).get("sources")}

emb = client.embeddings.create(model="ask", input=["security deposit", "sourdough starter"])
out["embeddings"] = [e.embedding for e in emb.data]
one = client.embeddings.create(model="ask", input="security deposit", encoding_format="float")
out["embedding_float"] = one.data[0].embedding

errors = {}
try:
    client.chat.completions.create(model="gpt-4o", messages=question)
except openai.NotFoundError as e:
    errors["unknown_model"] = [e.status_code, e.code]
try:
    client.chat.completions.create(model="ask", messages=question, max_tokens=100000)
except openai.BadRequestError as e:
    errors["max_tokens"] = [e.status_code, e.param]
out["errors"] = errors

print(json.dumps(out))

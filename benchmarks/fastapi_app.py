"""The comparison twin: FastAPI + uvicorn making the same one OpenAI SDK call per chat (benchmarks only).

    OPENAI_BASE_URL=... OPENAI_API_KEY=... uvicorn benchmarks.fastapi_app:app --workers 2

The way such twins are usually written: a pydantic body, the SDK's typed
``chat.completions.create`` in a sync endpoint (FastAPI runs it in its thread
pool), one client per process. It sends the same system prompt as twin-server
and stores nothing, so it is the lower bound of what a FastAPI twin costs.
"""

import os
import uuid

from fastapi import FastAPI
from openai import OpenAI
from pydantic import BaseModel

from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server.turn.prompt import build_system_prompt

SYSTEM = build_system_prompt(FilesystemPersonaSource(example_persona_dir()).load())
client = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"], max_retries=0)
app = FastAPI()


class ChatRequest(BaseModel):
    message: str
    session_id: str | None = None


class ChatResponse(BaseModel):
    response: str
    session_id: str


@app.post("/chat")
def chat(request: ChatRequest) -> ChatResponse:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": request.message}],
    )
    return ChatResponse(response=completion.choices[0].message.content, session_id=request.session_id or str(uuid.uuid4()))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}

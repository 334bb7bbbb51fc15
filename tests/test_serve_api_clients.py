"""Real clients against serve-api on 127.0.0.1: the seed's OpenAI-SDK, requests and curl examples
(only the base URL and key changed) and the project's own `ApiBackend`, all on the local engine."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI, OpenAI
from PIL import Image
from pydantic import SecretStr

from bots.serve_api import create_app
from core.api_backend import ApiBackend
from core.engine import detect_faces
from core.errors import NoFaceError, UpstreamAuthError
from core.imaging import ImageLimits, prepare_image
from tests.test_serve_api import data_url, image_host, make_settings, serving

KEY = "sk-xxxxx"


@contextlib.asynccontextmanager
async def serve_api(tmp_path: Path, **overrides: Any) -> AsyncIterator[str]:
    """serve-api on the real local engine, with a key; yields its OpenAI base URL (`.../v1`)."""
    from core.local_backend import LocalBackend

    settings, serve_settings = make_settings(tmp_path, serve_api_keys=KEY, **overrides)
    backend = LocalBackend(threads=2)
    try:
        async with serving(create_app(settings, serve_settings, backend)) as client:
            yield f"{client.base_url}/v1"
    finally:
        await backend.aclose()


def seed_messages(image_url: str) -> Any:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a person"},
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }
    ]


async def download_size(url: str) -> tuple[int, int]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/")
    with Image.open(io.BytesIO(response.content)) as image:
        return image.size


# --- (a) the official OpenAI SDK ------------------------------------------------------------------


def seed_sdk_example(base_url: str, image_url: str) -> str:
    """The seed's SDK example verbatim but for `base_url` and `api_key` (sync: run in a thread)."""
    client = OpenAI(
        base_url=base_url,
        api_key=KEY,
        # openai 3 annotates httpx2 clients but accepts httpx ones, as the seed passes.
        http_client=httpx.Client(  # type: ignore[arg-type]
            base_url=base_url,
            follow_redirects=True,
        ),
    )
    response = client.chat.completions.create(
        model="retouch",
        extra_body={"codeformer_fidelity": 0.1},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a person"},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
    )
    client.close()
    content = response.choices[0].message.content
    assert response.model == "retouch"
    assert response.object == "chat.completion"
    assert response.id.startswith("xty-")
    assert isinstance(content, str)
    return content


async def test_openai_sdk_seed_example_with_a_data_url(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    async with serve_api(tmp_path) as base_url:
        result_url = await asyncio.to_thread(seed_sdk_example, base_url, data_url(portrait_bytes))
        assert await download_size(result_url) == (512, 512)


async def test_async_openai_sdk_with_a_local_http_url(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    async with (
        image_host(portrait_bytes) as image_url,
        serve_api(tmp_path, serve_api_allow_private_urls=True) as base_url,
        httpx.AsyncClient(base_url=base_url, follow_redirects=True) as http_client,
    ):
        client = AsyncOpenAI(
            base_url=base_url,
            api_key=KEY,
            http_client=http_client,  # type: ignore[arg-type]  # httpx, as in the seed
        )
        response = await client.chat.completions.create(
            model="retouch",
            extra_body={"codeformer_fidelity": 0.1},
            messages=seed_messages(image_url),
        )
        result_url = response.choices[0].message.content
        assert result_url is not None
        assert await download_size(result_url) == (512, 512)

        models = await client.models.list()
        assert [model.id for model in models.data] == ["retouch"]


# --- (b) the seed's requests and curl examples ----------------------------------------------------


def seed_body(image_url: str) -> dict[str, Any]:
    """The seed's requests/curl body: the literal `extra_body` key inside the JSON."""
    return {
        "model": "retouch",
        "extra_body": {"codeformer_fidelity": 0.1},
        "messages": seed_messages(image_url),
    }


async def test_requests_style_body_with_a_literal_extra_body_key(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    async with serve_api(tmp_path) as base_url, httpx.AsyncClient() as client:
        url = f"{base_url}/chat/completions"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        data = seed_body(data_url(portrait_bytes))
        # requests.post(url, headers=headers, data=json.dumps(data)), with httpx
        response = await client.post(url, headers=headers, content=json.dumps(data))
        assert response.status_code == 200, response.text
        assert await download_size(response.json()["choices"][0]["message"]["content"]) == (
            512,
            512,
        )


async def test_curl_example(tmp_path: Path, portrait_bytes: bytes) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = tmp_path / "body.json"
    body.write_text(json.dumps(seed_body(data_url(portrait_bytes))))
    async with serve_api(tmp_path) as base_url:
        process = await asyncio.create_subprocess_exec(
            curl,
            "--silent",
            "--show-error",
            f"{base_url}/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Authorization: Bearer {KEY}",
            "-d",
            f"@{body}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr
        answer = json.loads(stdout)
        assert await download_size(answer["choices"][0]["message"]["content"]) == (512, 512)


# --- (c) the project's own client of the hosted API -----------------------------------------------


async def test_api_backend_against_serve_api(
    tmp_path: Path, portrait_bytes: bytes, portrait_rgb: np.ndarray, no_face_bytes: bytes
) -> None:
    settings, _ = make_settings(tmp_path)
    limits = ImageLimits.from_settings(settings)
    portrait = prepare_image(portrait_bytes, limits)
    no_face = prepare_image(no_face_bytes, limits)
    async with serve_api(tmp_path) as base_url, httpx.AsyncClient(timeout=30) as client:
        backend = ApiBackend(client, base_url=base_url, api_key=SecretStr(KEY), max_retries=0)
        result = await backend.retouch(portrait, 0.1)
        with pytest.raises(NoFaceError):
            await backend.retouch(no_face, 0.1)
        wrong_key = ApiBackend(
            client, base_url=base_url, api_key=SecretStr("sk-wrong"), max_retries=0
        )
        with pytest.raises(UpstreamAuthError):
            await wrong_key.retouch(portrait, 0.1)

    with Image.open(io.BytesIO(result)) as image:
        retouched = np.asarray(image.convert("RGB")).astype(int)
    assert retouched.shape == portrait_rgb.shape
    change = np.abs(retouched - portrait_rgb.astype(int)).mean(axis=2)
    face = detect_faces(portrait_rgb)[0].box
    in_face = np.zeros(change.shape, dtype=bool)
    in_face[face.y : face.y + face.h, face.x : face.x + face.w] = True
    # The retouch is in the face; elsewhere only re-encoding and a gentle tone change remain.
    assert change[in_face].mean() > 1.5
    assert change[in_face].mean() > 2 * change[~in_face].mean()
